#!/usr/bin/env bash
# The HTML report of a real example, rendered by headless Chromium: the page's script must draw
# the chart (an <svg> with its stacked areas and the peak) without a console message, and both
# tables must be there. Skipped (exit 77) where /usr/bin/chromium is not installed.
# Usage: report_browser_test.sh VRAMSIM_BINARY REPO_ROOT
set -euo pipefail
vramsim=${1:?usage: $0 VRAMSIM_BINARY REPO_ROOT}
root=${2:?usage: $0 VRAMSIM_BINARY REPO_ROOT}
chromium=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $chromium ]]; then
  echo "SKIP: $chromium is not installed (bash scripts/setup.sh installs it)"
  exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

"$vramsim" estimate "$root/examples/resnet18.onnx" --dim batch=8 --html "$tmp/r.html" \
  --trace "$tmp/t.json" >"$tmp/estimate.txt"
[[ -s $tmp/r.html ]] || fail "no HTML report written"
[[ -s $tmp/t.json ]] || fail "no trace written"
if command -v python3 >/dev/null; then
  python3 - "$tmp/t.json" <<'EOF' || fail "the trace is not valid trace-event JSON"
import json, sys
events = json.load(open(sys.argv[1]))["traceEvents"]
assert any(e["ph"] == "X" for e in events)
assert any(e["ph"] == "C" for e in events)
assert sum(e["ph"] == "i" for e in events) == 1
EOF
fi

# The page's own console output goes to stderr as "INFO:CONSOLE..." lines; it logs nothing when
# all is well, so any such line (an uncaught exception included) is a failure.
timeout 180 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$tmp/profile" --enable-logging=stderr --v=0 \
  --dump-dom "file://$tmp/r.html" >"$tmp/dom.html" 2>"$tmp/chromium.log" ||
  { cat "$tmp/chromium.log" >&2; fail "chromium exited with $?"; }

if grep -E 'CONSOLE|Uncaught' "$tmp/chromium.log" >&2; then
  fail "the page logged to the console (above)"
fi

dom=$tmp/dom.html
count() { grep -o -- "$1" "$dom" | wc -l; }
grep -q '<svg id="chart-svg"' "$dom" || fail "the script drew no chart <svg>"
areas=$(count '<path class="area"')
((areas >= 4)) || fail "expected at least 4 stacked areas, found $areas"
grep -q 'class="total-line"' "$dom" || fail "no total line"
grep -q 'class="peak-dot"' "$dom" || fail "no peak marker"
grep -q 'class="peak-label"[^>]*>peak [0-9.]* MiB' "$dom" || fail "no peak label"
bands=$(count '<rect class="band"')
((bands >= 4)) || fail "expected the phases shaded, found $bands bands"
grep -q '<table id="tensors"' "$dom" || fail "no table of the tensors alive at the peak"
grep -q '<table id="scopes"' "$dom" || fail "no per-scope table"
grep -q '/conv1/Conv_output_0' "$dom" || fail "the tensors table lacks /conv1/Conv_output_0"
grep -q '<td class="name">layer4.0.conv2</td>' "$dom" || fail "the scope table lacks layer4.0.conv2"
rows=$(count '<tr><td class="num muted">')
((rows >= 100)) || fail "expected the tensors alive at the peak listed, found $rows rows"
grep -q '<title>vramsim: .*resnet18.onnx' "$dom" || fail "no title"
if grep -E -i '(src|href)="?(https?:)?//' "$dom" >&2; then
  fail "the page references the network"
fi
echo "PASS: chart with $areas areas and $bands phase bands, $rows tensor rows"
