#!/bin/bash
# Demo wall time: before (fef6d3b) / after (main, default precision "auto") / after with float32,
# alternated, each in a fresh temp folder.
PY=/work/main/.venv/bin/python
mkdir -p /tmp/demo_ab2
for rep in 2 3; do
  for v in before after after_f32; do
    d=$(mktemp -d /tmp/demo_ab2/$v.XXXX); cd $d
    extra=""
    case $v in
      before) src=/tmp/demo_before_src;;
      after) src=/work/main;;
      after_f32) src=/work/main; extra="--config.train.precision=float32 --config.finetune.precision=float32";;
    esac
    l0=$(cut -d' ' -f1 /proc/loadavg); t0=$(date +%s.%N)
    PYTHONPATH=$src TF_CPP_MIN_LOG_LEVEL=3 $PY -m remotetrimmer_tf.prune $extra > out.log 2>&1
    rc=$?
    t1=$(date +%s.%N); l1=$(cut -d' ' -f1 /proc/loadavg)
    acc=$(grep -E "^\| (trained|finetuned|LiteRT none|LiteRT int8) " runs/*/report.md 2>/dev/null | awk -F'|' '{printf "%s=%s ", $2, $5}')
    echo "rep=$rep variant=$v rc=$rc wall_s=$(echo "$t1 - $t0" | bc) load=$l0->$l1 $acc dir=$d" >> /tmp/demo_ab2/results.txt
  done
done
