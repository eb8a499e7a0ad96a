#!/bin/bash
# The accuracy side of a ticket's granularity: IMP on minilm-l6 + Rotten Tomatoes with the minilm preset's recipe
# (2,000 training examples, 1 epoch, lr 1e-4), seed 0, halving the remaining weights each round to 90%, at each
# granularity; 2:4 at 50% (its constraint). Dev accuracy at every round is in the report's curves and Table 2, with
# granularity as arms. About 17 trainings of 63 steps: ~45 min on 2 cores. Resumable: run it again to go on.
# Run: benchmarks/granularity_accuracy.sh [OUT]   (default runs/granularity)
set -euo pipefail
out=${1:-runs/granularity}
ticketlab=${TICKETLAB:-.venv/bin/ticketlab}
recipe=(--model minilm-l6 --task rotten-tomatoes --train-examples 2000 --epochs 1 --lr 1e-4 --schedule geometric --rate 0.5)
for granularity in weight block:1x4 block:8x8; do
    "$ticketlab" find "${recipe[@]}" --sparsity 0.9 --granularity "$granularity" --out "$out"
done
"$ticketlab" find "${recipe[@]}" --sparsity 0.5 --granularity 2:4 --out "$out"
"$ticketlab" report "$out"
