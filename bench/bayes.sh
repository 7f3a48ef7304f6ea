#!/usr/bin/env bash
# Benchmarks the bayes package against bogofilter on the SpamAssassin public corpus.
#
# Both filters train on the same train split (1513 spam, 3344 ham) and classify the same
# test split (383 spam, 806 ham) in the same run. For each it prints the false positive and
# false negative rates at its cut-off, 1 − ROC area (bogofilter's from its spamicity
# scores), and train and classify rates in messages per second, both by the wall clock and
# per CPU second (user + system; the fairer number on a shared machine), with the ratio
# portcullis/bogofilter. Classification runs ROUNDS times, alternating the two tools so that
# both see the same load. portcullis runs as a process like bogofilter: bench/cmd/bayes-eval,
# the code of `portcullis bayes` in a binary that links nothing else, including opening the
# SQLite store and reading its token snapshot, which training leaves beside it. The
# in-process rates of `bayes eval` (without process start and database load) are printed
# too, measured in the same alternation.
#
# bogofilter runs in bulk mode: `bogofilter -d DIR -s -B files...`, `-n -B`, `-T -B`
# (-B wants file names: given a directory it silently does nothing).
#
# Usage: bench/bayes.sh   (env: ROUNDS=3, KEEP=1 keeps the work directory)
# Needs: go, bogofilter (installed with apt-get when missing), python3 and npm for the corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}

corpus=${PORTCULLIS_SA_CORPUS:-.cache/sa-corpus}
if [ ! -d "$corpus/test/spam" ]; then
  bash ../shared/tools/sa-corpus.sh "$corpus" >&2
fi
if ! command -v bogofilter >/dev/null; then
  echo "bayes.sh: installing bogofilter" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y bogofilter >&2; else sudo apt-get install -y bogofilter >&2; fi
fi

work=$(mktemp -d /tmp/bayes-bench.XXXXXX)
if [ "${KEEP:-}" != 1 ]; then trap 'rm -rf "$work"' EXIT; fi
(cd bench && go build -o "$work/bayes-eval" ./cmd/bayes-eval)
BE=$work/bayes-eval

# lists of files (bogofilter -B needs names)
for s in train test; do
  for c in spam ham; do
    find "$corpus/$s/$c" -type f -name '*.eml' | sort > "$work/$s-$c.list"
  done
done
cat "$work/test-spam.list" "$work/test-ham.list" > "$work/test.list"
ntrain=$(cat "$work/train-spam.list" "$work/train-ham.list" | wc -l)
ntest=$(wc -l < "$work/test.list")

# timed CMD...: runs CMD (stdout to $work/out, stderr to $work/err) and appends
# "real user sys" to $work/time
timed() {
  local TIMEFORMAT='%R %U %S'
  { time "$@" >"$work/out" 2>"$work/err"; } 2>>"$work/time" || { cat "$work/err" >&2; return 1; }
}
sum_times() { awk '{r+=$1; c+=$2+$3} END {printf "%.3f %.3f\n", r, c}' "$1"; }

echo "training on $ntrain messages, classifying $ntest, $ROUNDS rounds" >&2

# --- training
: > "$work/time"
mkdir -p "$work/bogo"
timed bash -c "xargs -d '\n' -a '$work/train-spam.list' bogofilter -d '$work/bogo' -s -B && xargs -d '\n' -a '$work/train-ham.list' bogofilter -d '$work/bogo' -n -B"
read -r bogo_train_real bogo_train_cpu < <(sum_times "$work/time")
: > "$work/time"
timed "$BE" train --db "$work/p/global.db" --spam "$corpus/train/spam" --ham "$corpus/train/ham"
read -r p_train_real p_train_cpu < <(sum_times "$work/time")

# --- classification, alternating: bogofilter, portcullis as a process, and the
# in-process rates of the same code (bayes eval: trains in memory, then times
# classification passes), so that all three see the same load
: > "$work/bogo.time"; : > "$work/p.time"; : > "$work/eval.rates"
for ((r = 1; r <= ROUNDS; r++)); do
  : > "$work/time"
  timed bash -c "xargs -d '\n' -a '$work/test.list' bogofilter -d '$work/bogo' -T -B; true"  # exit status is the verdict; the line count is checked below
  cat "$work/time" >> "$work/bogo.time"; cp "$work/out" "$work/bogo.scores"
  : > "$work/time"
  timed "$BE" classify --db "$work/p/global.db" "$corpus/test/spam" "$corpus/test/ham"
  cat "$work/time" >> "$work/p.time"; cp "$work/out" "$work/p.scores"
  "$BE" eval --train-spam "$corpus/train/spam" --train-ham "$corpus/train/ham" \
    --test-spam "$corpus/test/spam" --test-ham "$corpus/test/ham" --json > "$work/eval.json"
  echo "$(sed -E 's/.*"classify_msgs_per_cpu_sec":([0-9.]+).*/\1/' "$work/eval.json")" \
    "$(sed -E 's/.*"classify_parallel_msgs_per_sec":([0-9.]+).*/\1/' "$work/eval.json")" >> "$work/eval.rates"
done
read -r bogo_cls_real bogo_cls_cpu < <(sum_times "$work/bogo.time")
read -r p_cls_real p_cls_cpu < <(sum_times "$work/p.time")
threshold=$(sed -E 's/.*"threshold":([0-9.]+).*/\1/' "$work/eval.json")

# "name score class" lines: class 1 = spam; verdict letter for bogofilter's own cut-offs
awk '{print $1, $2, ($1 ~ /\/spam\//) ? 1 : 0, ($3 == "spam") ? "S" : "H"}' "$work/p.scores" > "$work/p.s"
awk '{print $1, $3, ($1 ~ /\/spam\//) ? 1 : 0, $2}' "$work/bogo.scores" > "$work/bogo.s"
for f in p bogo; do
  n=$(wc -l < "$work/$f.s")
  [ "$n" = "$ntest" ] || { echo "bayes.sh: $f classified $n of $ntest messages" >&2; exit 1; }
done

# metrics CUT FILE -> "fp nham fn nspam one_minus_auc fp_own fn_own"
metrics() {
  sort -g -k2,2 "$2" | awk -v cut="$1" '
    { s[NR] = $2; y[NR] = $3; v[NR] = $4; if ($3) P++; else N++ }
    END {
      i = 1; R = 0
      while (i <= NR) { j = i; while (j < NR && s[j+1] == s[i]) j++; r = (i + j) / 2; for (k = i; k <= j; k++) if (y[k]) R += r; i = j + 1 }
      auc = (R - P * (P + 1) / 2) / (P * N)
      for (k = 1; k <= NR; k++) {
        if (!y[k] && s[k] >= cut) fp++; if (y[k] && s[k] < cut) fn++
        if (!y[k] && v[k] == "S") fpo++; if (y[k] && v[k] != "S") fno++
      }
      printf "%d %d %d %d %.6f %d %d\n", fp, N, fn, P, 1 - auc, fpo, fno
    }'
}
read -r pfp pN pfn pP pauc _ _ < <(metrics "$threshold" "$work/p.s")
read -r bfp bN bfn bP bauc bfpo bfno < <(metrics 0.5 "$work/bogo.s")

rate() { awk -v n="$1" -v t="$2" 'BEGIN { if (t > 0) printf "%.0f", n / t; else print "-" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f%% (%d/%d)", 100 * a / b, a, b }'; }

ptr=$(rate "$ntrain" "$p_train_real"); btr=$(rate "$ntrain" "$bogo_train_real")
ptc=$(rate "$ntrain" "$p_train_cpu"); btc=$(rate "$ntrain" "$bogo_train_cpu")
pcr=$(rate $((ntest * ROUNDS)) "$p_cls_real"); bcr=$(rate $((ntest * ROUNDS)) "$bogo_cls_real")
pcc=$(rate $((ntest * ROUNDS)) "$p_cls_cpu"); bcc=$(rate $((ntest * ROUNDS)) "$bogo_cls_cpu")
# the rounds' in-process rates combined as total messages over total time (harmonic mean)
inproc_cpu=$(awk '{s += 1 / $1} END {printf "%.0f", NR / s}' "$work/eval.rates")
inproc_par=$(awk '{s += 1 / $2} END {printf "%.0f", NR / s}' "$work/eval.rates")

printf '| %-44s | %-18s | %-18s | %-8s |\n' "metric" "portcullis bayes" "bogofilter" "ratio"
printf '|%s|%s|%s|%s|\n' "----------------------------------------------" "--------------------" "--------------------" "----------"
printf '| %-44s | %-18s | %-18s | %-8s |\n' "false positives (cut-off $threshold / 0.5)" "$(pct "$pfp" "$pN")" "$(pct "$bfp" "$bN")" ""
printf '| %-44s | %-18s | %-18s | %-8s |\n' "false negatives (cut-off $threshold / 0.5)" "$(pct "$pfn" "$pP")" "$(pct "$bfn" "$bP")" ""
printf '| %-44s | %-18s | %-18s | %-8s |\n' "bogofilter's own cut-offs: FP / FN" "" "$(pct "$bfpo" "$bN") / $(pct "$bfno" "$bP")" ""
printf '| %-44s | %-18s | %-18s | %-8s |\n' "1 - ROC area" "$pauc" "$bauc" "$(ratio "$pauc" "$bauc")"
printf '| %-44s | %-18s | %-18s | %-8s |\n' "train msgs/s (wall)" "$ptr" "$btr" "$(ratio "$ptr" "$btr")"
printf '| %-44s | %-18s | %-18s | %-8s |\n' "train msgs per CPU second" "$ptc" "$btc" "$(ratio "$ptc" "$btc")"
printf '| %-44s | %-18s | %-18s | %-8s |\n' "classify msgs/s (wall, process)" "$pcr" "$bcr" "$(ratio "$pcr" "$bcr")"
printf '| %-44s | %-18s | %-18s | %-8s |\n' "classify msgs per CPU second (process)" "$pcc" "$bcc" "$(ratio "$pcc" "$bcc")"
printf '| %-44s | %-18s | %-18s | %-8s |\n' "classify msgs per CPU second (in-process)" "${inproc_cpu%.*}" "$bcc" "$(ratio "$inproc_cpu" "$bcc")"
printf '| %-44s | %-18s | %-18s | %-8s |\n' "classify msgs/s, $(nproc) goroutines (in-process)" "${inproc_par%.*}" "$bcr" "$(ratio "$inproc_par" "$bcr")"
echo
echo "in-process eval (last round): $(cat "$work/eval.json")"
echo "in-process rates per round (per CPU second, 2 goroutines wall): $(tr '\n' ';' < "$work/eval.rates")"
