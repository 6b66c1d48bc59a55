#!/bin/bash
# How benchmarks/results/flex-fused and this grid were made (issue 17), on a quiet machine, 2026-12-01.
# Resumable: each step writes into its folder and --resume skips the cases already there.
cd "$(dirname "$0")/../../.."
A="attnkit bench --suite grid --threads 2 --max-memory 16 --batch 1 --heads 8 --head-dim 64"
# 1. target 1 (commit 04a6fd2): auto vs compiled FlexAttention, forward, 512..32768
$A --impl attnkit-auto,flex --mask sliding,document --L 512,1024,2048,4096,8192,16384,32768 --pass fwd \
   --out benchmarks/results/flex-fused --resume
# 2. target 4 (commit 04a6fd2): the grid summary at 1k..16k, every mask and pass, auto against every peer
G="--impl attnkit-auto,sdpa,sdpa-math,naive,mha,flex --mask none,causal,sliding,document,padding --pass fwd,fwdbwd"
$A $G --L 1024,2048,4096 --out benchmarks/results/grid-1k-16k --resume
$A $G --L 8192,16384 --once --out benchmarks/results/grid-1k-16k --resume
# 3. after key padding joined the fused pieces (commit de223f3): the attnkit-auto padding rows were removed
#    from results.json and re-run
$A --impl attnkit-auto --mask padding --pass fwd,fwdbwd --L 1024,2048,4096 --out benchmarks/results/grid-1k-16k --resume
$A --impl attnkit-auto --mask padding --pass fwd,fwdbwd --L 8192,16384 --once --out benchmarks/results/grid-1k-16k --resume
