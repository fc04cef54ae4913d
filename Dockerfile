# gitops-autopilot on the official Azure Functions Python 3.11 image, plus the git executable the workers need
# (the stock Functions Python images have none) and, optionally, helm 3 for HELM_MODE=rendered.
#
#   docker build -t gitops-autopilot:0.1.0 .
#   docker build -t gitops-autopilot:0.1.0 --build-arg INSTALL_HELM=true .     # rendered mode
#
# Runs on Premium (Elastic Premium), Dedicated (App Service) plans and Azure Container Apps hosting of Functions;
# not on Consumption / Flex Consumption (no custom images there). See README "Deploying to Azure".
FROM mcr.microsoft.com/azure-functions/python:4-python3.11

# helm 3 for HELM_MODE=rendered, pinned by version and checked against the SHA-256 that get.helm.sh publishes
# for that archive (helm-v<version>-linux-amd64.tar.gz.sha256sum). Change all three together.
ARG INSTALL_HELM=false
ARG HELM_VERSION=3.16.3
ARG HELM_SHA256=f5355c79190951eed23c5432a3b920e071f4c00a64f75e077de0dd4cb7b294ea

ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && git --version

RUN if [ "$INSTALL_HELM" = "true" ]; then \
        set -eu; \
        curl -fsSL -o /tmp/helm.tar.gz "https://get.helm.sh/helm-v${HELM_VERSION}-linux-amd64.tar.gz"; \
        echo "${HELM_SHA256}  /tmp/helm.tar.gz" | sha256sum -c -; \
        tar -xzf /tmp/helm.tar.gz -C /tmp linux-amd64/helm; \
        install -m 0755 /tmp/linux-amd64/helm /usr/local/bin/helm; \
        rm -rf /tmp/helm.tar.gz /tmp/linux-amd64; \
        helm version --short; \
    fi

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt /home/site/wwwroot/requirements.txt
RUN pip install --no-cache-dir -r /home/site/wwwroot/requirements.txt

# Exactly what .funcignore lets through (tests/test_dockerfile.py checks the two agree).
COPY host.json function_app.py /home/site/wwwroot/
COPY core /home/site/wwwroot/core
COPY handlers /home/site/wwwroot/handlers

# No USER: the base image defines no unprivileged user, its host listens on port 80 (ASPNETCORE_URLS=http://+:80)
# and its start script (/opt/startup/start_nonappservice.sh, the image's CMD, kept as is) installs CA
# certificates into the system store, all of which need root. The app writes only under the temp dir.
