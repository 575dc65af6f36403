FROM python:3.11-slim
# chatops runs as an unprivileged user; Postgres comes from DATABASE_URL in production
# (the embedded server is for `chatops demo` and local development).
RUN useradd --create-home --uid 10001 chatops
WORKDIR /app
COPY pyproject.toml README.md ./
COPY chatops ./chatops
RUN pip install --no-cache-dir .
COPY commands ./commands
COPY runbooks ./runbooks
COPY policy ./policy
USER chatops
ENV CHATOPS_DATA_DIR=/home/chatops/data \
    CHATOPS_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
ENTRYPOINT ["chatops"]
CMD ["run"]
