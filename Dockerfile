FROM python:3.11.11-slim-bookworm
RUN useradd --create-home --uid 10001 homeward
WORKDIR /app
COPY pyproject.toml README.md ./
COPY homeward ./homeward
COPY edge ./edge
COPY server ./server
COPY alerts ./alerts
COPY device_sim ./device_sim
COPY stack ./stack
RUN pip install --no-cache-dir .
USER homeward
ENV HOMEWARD_ENV=production
EXPOSE 8000
CMD ["homeward", "serve"]
