"""Record Access Control Point 0x2A52: decode both directions, build the requests the edge sends.

Op Code u8 . Operator u8 . Operand (ble-gatt.md 1.6; SIG XML; Nordic
RecordAccessControlPointData).  Op codes 0x01-0x04 and 0x07 are requests
(client -> server), 0x05, 0x06 and 0x08 responses, so the op code alone tells
the direction.  Filter operand (operators <=, >=, within range): Filter Type u8
(1 = sequence number u16, 2 = user facing time, a Date Time) then one value
(two for "within range").

No builder for "delete stored records": many devices lack it and it destroys
the only copy (ble-gatt.md 1.6 step 7).
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Final

from .errors import GattParseError
from .fields import DATE_TIME_SIZE, Bytes, date_time, note_trailing, require
from .results import RacpNumberOfRecords, RacpRequest, RacpResponse

OP_REPORT_STORED_RECORDS: Final = 0x01
OP_DELETE_STORED_RECORDS: Final = 0x02
OP_ABORT: Final = 0x03
OP_REPORT_NUMBER_OF_RECORDS: Final = 0x04
OP_NUMBER_OF_RECORDS_RESPONSE: Final = 0x05
OP_RESPONSE_CODE: Final = 0x06
OP_COMBINED_REPORT: Final = 0x07
OP_COMBINED_REPORT_RESPONSE: Final = 0x08

OPERATOR_NULL: Final = 0x00
OPERATOR_ALL: Final = 0x01
OPERATOR_LESS_OR_EQUAL: Final = 0x02
OPERATOR_GREATER_OR_EQUAL: Final = 0x03
OPERATOR_WITHIN_RANGE: Final = 0x04
OPERATOR_FIRST: Final = 0x05
OPERATOR_LAST: Final = 0x06

FILTER_SEQUENCE_NUMBER: Final = 0x01
FILTER_USER_FACING_TIME: Final = 0x02

RESPONSE_SUCCESS: Final = 0x01
RESPONSE_NO_RECORDS_FOUND: Final = 0x06

REQUEST_NAMES: Final = {
    OP_REPORT_STORED_RECORDS: "report_stored_records",
    OP_DELETE_STORED_RECORDS: "delete_stored_records",
    OP_ABORT: "abort_operation",
    OP_REPORT_NUMBER_OF_RECORDS: "report_number_of_stored_records",
    OP_COMBINED_REPORT: "combined_report",
}
OPERATOR_NAMES: Final = {
    OPERATOR_NULL: "null",
    OPERATOR_ALL: "all_records",
    OPERATOR_LESS_OR_EQUAL: "less_than_or_equal_to",
    OPERATOR_GREATER_OR_EQUAL: "greater_than_or_equal_to",
    OPERATOR_WITHIN_RANGE: "within_range",
    OPERATOR_FIRST: "first_record",
    OPERATOR_LAST: "last_record",
}
RESPONSE_NAMES: Final = {
    0x01: "success",
    0x02: "op_code_not_supported",
    0x03: "invalid_operator",
    0x04: "operator_not_supported",
    0x05: "invalid_operand",
    0x06: "no_records_found",
    0x07: "abort_unsuccessful",
    0x08: "procedure_not_completed",
    0x09: "operand_not_supported",
    0x0A: "server_busy",
}
#: Operators that take a filter operand, and how many filter values.
_FILTER_VALUES: Final = {
    OPERATOR_LESS_OR_EQUAL: 1,
    OPERATOR_GREATER_OR_EQUAL: 1,
    OPERATOR_WITHIN_RANGE: 2,
}
_FILTER_VALUE_SIZE: Final = {FILTER_SEQUENCE_NUMBER: 2, FILTER_USER_FACING_TIME: DATE_TIME_SIZE}
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")

RacpMessage = RacpRequest | RacpNumberOfRecords | RacpResponse


def decode_racp(data: Bytes) -> RacpMessage:
    """0x2A52 in either direction -> :class:`RacpRequest`, :class:`RacpNumberOfRecords` or
    :class:`RacpResponse`."""
    what = "record access control point"
    n = require(data, 2, what)
    op, operator = data[0], data[1]
    if op in (OP_NUMBER_OF_RECORDS_RESPONSE, OP_COMBINED_REPORT_RESPONSE):
        if operator != OPERATOR_NULL:
            raise GattParseError(f"{what}: response op 0x{op:02X} with operator 0x{operator:02X}")
        # GLS/PLXS: uint16 count; combined report response (newer services): uint32.
        struct_ = _U16 if op == OP_NUMBER_OF_RECORDS_RESPONSE else _U32
        require(data, 2 + struct_.size, what)
        note_trailing(data, 2 + struct_.size, what)
        return RacpNumberOfRecords(count=struct_.unpack_from(data, 2)[0])
    if op == OP_RESPONSE_CODE:
        if operator != OPERATOR_NULL:
            raise GattParseError(f"{what}: response code with operator 0x{operator:02X}")
        require(data, 4, what)
        request_op, code = data[2], data[3]
        name = RESPONSE_NAMES.get(code)
        if name is None:
            raise GattParseError(f"{what}: reserved response code 0x{code:02X}")
        note_trailing(data, 4, what)
        return RacpResponse(request_op_code=request_op, response_code=code, response_name=name)
    op_name = REQUEST_NAMES.get(op)
    if op_name is None:
        raise GattParseError(f"{what}: reserved op code 0x{op:02X}")
    operator_name = OPERATOR_NAMES.get(operator)
    if operator_name is None:
        raise GattParseError(f"{what}: reserved operator 0x{operator:02X}")
    if (op == OP_ABORT) != (operator == OPERATOR_NULL):
        raise GattParseError(f"{what}: operator {operator_name} not valid with {op_name}")
    count = _FILTER_VALUES.get(operator)
    if count is None:
        note_trailing(data, 2, what)
        return RacpRequest(op_code=op, op_name=op_name, operator=operator,
                           operator_name=operator_name)
    require(data, 3, what)
    filter_type = data[2]
    size = _FILTER_VALUE_SIZE.get(filter_type)
    if size is None:
        raise GattParseError(f"{what}: unsupported filter type 0x{filter_type:02X}")
    need = 3 + count * size
    if n < need:
        raise GattParseError(f"{what}: operator {operator_name} needs {need} bytes, got {n}")
    operand: tuple[int | datetime | None, ...]
    if filter_type == FILTER_SEQUENCE_NUMBER:
        numbers = [_U16.unpack_from(data, 3 + 2 * i)[0] for i in range(count)]
        if count == 2 and numbers[0] > numbers[1]:
            raise GattParseError(f"{what}: sequence range {numbers[0]}..{numbers[1]} is empty")
        operand = tuple(numbers)
    else:
        operand = tuple(date_time(data, 3 + size * i)[0] for i in range(count))
    note_trailing(data, need, what)
    return RacpRequest(op_code=op, op_name=op_name, operator=operator,
                       operator_name=operator_name, filter_type=filter_type,
                       operand=operand)


# --- builders for the requests the edge writes ------------------------------------------


def _sequence(sequence_number: int) -> bytes:
    if not 0 <= sequence_number <= 0xFFFF:
        raise ValueError(f"sequence number {sequence_number} is not a uint16")
    return bytes((FILTER_SEQUENCE_NUMBER,)) + _U16.pack(sequence_number)


def report_all_records() -> bytes:
    """``01 01``: report all stored records."""
    return bytes((OP_REPORT_STORED_RECORDS, OPERATOR_ALL))


def report_number_of_records() -> bytes:
    """``04 01``: how many records are stored (answer: op 0x05 with a uint16)."""
    return bytes((OP_REPORT_NUMBER_OF_RECORDS, OPERATOR_ALL))


def report_records_from(sequence_number: int) -> bytes:
    """``01 03 01 <seq LE>``: report records with sequence number >= ``sequence_number``."""
    return bytes((OP_REPORT_STORED_RECORDS, OPERATOR_GREATER_OR_EQUAL)) + _sequence(
        sequence_number)


def report_number_of_records_from(sequence_number: int) -> bytes:
    """``04 03 01 <seq LE>``: count records with sequence number >= ``sequence_number``."""
    return bytes((OP_REPORT_NUMBER_OF_RECORDS, OPERATOR_GREATER_OR_EQUAL)) + _sequence(
        sequence_number)


def report_last_record() -> bytes:
    """``01 06``: report the most recent record (learn the newest sequence number)."""
    return bytes((OP_REPORT_STORED_RECORDS, OPERATOR_LAST))


def abort_operation() -> bytes:
    """``03 00``: abort the running procedure (e.g. on a download watchdog timeout)."""
    return bytes((OP_ABORT, OPERATOR_NULL))
