# A provided.al2023 image whose runtime is lambdalet's Python bootstrap.
#
#   docker build -t my-function .            (BuildKit: COPY --chmod)
#   docker run -p 9000:8080 my-function
#   curl -s localhost:9000/2015-03-31/functions/function/invocations -d '{"name": "you"}'
#
# --build-arg LOCAL_EMULATOR=lambdalet swaps the base image's RIE (used only when the image runs
# outside Lambda) for lambdalet-rie: concurrent invocations, X-Amz-Function-Error, streaming.
# tests/clients/test_dockerfile.py reproduces this layout from this file and runs it; keep each step one
# line of the forms it reads (ARG, ENV, COPY, RUN, CMD).

ARG PYTHON=python3.12

# --- build: the project's wheel and everything it needs, installed into one directory ----------
FROM public.ecr.aws/lambda/provided:al2023 AS build
ARG PYTHON
RUN dnf install -y ${PYTHON} ${PYTHON}-pip && dnf clean all
COPY pyproject.toml README.md LICENSE /src/
COPY bootstrap /src/bootstrap
COPY runtime_api /src/runtime_api
COPY sandbox /src/sandbox
COPY benchmarks /src/benchmarks
RUN ${PYTHON} -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels /src
# Compiled to .pyc here: Lambda's file system is read-only, a cold start could not cache them.
RUN ${PYTHON} -m pip install --no-cache-dir --target /var/runtime/lambdalet /wheels/lambdalet-*.whl

# --- the image: Python, the installed packages, the bootstrap, the function ------------------
FROM public.ecr.aws/lambda/provided:al2023
ARG PYTHON
ARG LOCAL_EMULATOR=aws
RUN dnf install -y ${PYTHON} && dnf clean all
ENV LAMBDALET_PYTHON=/usr/bin/${PYTHON}
ENV LAMBDALET_HOME=/var/runtime/lambdalet
COPY --from=build /var/runtime/lambdalet /var/runtime/lambdalet
COPY --chmod=755 bootstrap/bootstrap /var/runtime/bootstrap
COPY --chmod=755 runtime_api/lambdalet-rie /usr/local/bin/lambdalet-rie
RUN if [ "$LOCAL_EMULATOR" = "lambdalet" ]; then ln -sf /usr/local/bin/lambdalet-rie /usr/local/bin/aws-lambda-rie; fi
COPY runtime_api/examples/app.py /var/task/app.py
CMD ["app.handler"]
