#!/bin/bash
# Alternated demo runs: before (fef6d3b) / after fp32 / after bf16, each in a fresh temp folder.
PY=/work/main/.venv/bin/python
for rep in 1 2; do
  for v in before after_f32 after_bf16; do
    d=$(mktemp -d /tmp/demo_ab/$v.XXXX); cd $d
    case $v in
      before) src=/tmp/demo_before_src; extra="";;
      after_f32) src=/work/wt/i19; extra="--config.train.precision=float32 --config.finetune.precision=float32";;
      after_bf16) src=/work/wt/i19; extra="--config.train.precision=mixed_bfloat16 --config.finetune.precision=mixed_bfloat16";;
    esac
    l0=$(cat /proc/loadavg | cut -d' ' -f1)
    t0=$(date +%s.%N)
    PYTHONPATH=$src TF_CPP_MIN_LOG_LEVEL=3 $PY -m remotetrimmer_tf.prune $extra > out.log 2>&1
    rc=$?
    t1=$(date +%s.%N)
    l1=$(cat /proc/loadavg | cut -d' ' -f1)
    acc=$(grep -E "^\| (trained|finetuned|LiteRT none|LiteRT int8) " runs/*/report.md 2>/dev/null | awk -F'|' '{printf "%s=%s ", $2, $5}')
    echo "rep=$rep variant=$v rc=$rc wall_s=$(echo "$t1 - $t0" | bc) load=$l0->$l1 $acc dir=$d" >> /tmp/demo_ab/results.txt
  done
done
