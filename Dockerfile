# callengine in a container: `docker build -t callengine .` then
# `docker run -p 8080:8080 callengine serve mypkg.agent:handler --host 0.0.0.0 --port 8080`
# (copy your agent's package in with a derived image, or mount it and set PYTHONPATH).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY callengine ./callengine
RUN pip install . \
    && useradd --system --no-create-home --uid 10001 callengine

# never root; the CLI is PID 1, so SIGTERM (docker stop) and SIGUSR1 (a preStop hook) reach it
USER 10001
EXPOSE 8080
STOPSIGNAL SIGTERM
# the slim image has no curl: Python asks /healthz, which the call port answers
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["callengine"]
CMD ["serve", "echo", "--host", "0.0.0.0", "--port", "8080", "--agent-rate", "8000", "--log-format", "json"]
