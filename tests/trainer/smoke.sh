#!/bin/sh
# ctest trainer.smoke: the built-in model's whole pipeline at toy size — the
# corpus generator (checked against @huggingface/tokenizers), a 60-step
# training run through the curriculum, the analysis, the model card, and the
# written files loaded back by the wasm CLI. The loss must fall.
#   smoke.sh TRAIN_BUILTIN WORK_DIR
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
trainer=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
node "$root/tests/trainer/build_corpus.mjs" --out "$work/corpus" --docs 400 --merges 200 --verify 50 >/dev/null
"$trainer" --data "$work/corpus" --out "$work/model" --d-model 32 --heads 4 --d-mlp 64 --steps 60 --eval-every 20 \
  --seq-start 32 --seq-switch 30 --warmup 10 --lr 3e-3 --head-lasso-start 40 >"$work/train.log"
for f in config.json model.safetensors tokenizer.json README.md training.json curve.svg; do
  test -s "$work/model/$f" || { echo "trainer.smoke: $f was not written" >&2; exit 1; }
done
node "$root/wasm/cli.mjs" attn "$work/model" --text "Mary gave the book to John. Mary gave the book to John." --prepend-bos --out "$work/a.json"
node -e '
const fs = require("fs");
const t = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
const first = t.curve[0].text_loss, last = t.curve[t.curve.length - 1].text_loss;
if (!(last < first - 0.5)) { console.error(`trainer.smoke: held-out loss ${first} -> ${last} did not fall`); process.exit(1); }
const a = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
if (!(a.shape[0] === 2 && a.shape[1] === 4 && Number.isFinite(a.loss))) { console.error("trainer.smoke: the CLI could not run the model"); process.exit(1); }
console.log(`trainer.smoke: held-out loss ${first.toFixed(3)} -> ${last.toFixed(3)}; CLI loss ${a.loss.toFixed(3)}`);
' "$work/model/training.json" "$work/a.json"
