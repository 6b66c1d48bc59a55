#!/bin/bash
# How this folder was made (issue 17, target 1, session 7), on a quiet machine, 2026-12-01.
# Resumable: --resume skips the cases already in results.json.
cd "$(dirname "$0")/../../.."
attnkit bench --suite grid --impl attnkit-auto,sdpa,flex --mask sliding,document --L 512,1024,2048,4096 \
  --pass fwd,fwdbwd --threads 2 --max-memory 16 --batch 1 --heads 8 --head-dim 64 \
  --out benchmarks/results/flex-grouped --resume
