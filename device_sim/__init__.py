"""Virtual BLE peripherals served through a bleak backend, scenarios, simulated homes, load."""
