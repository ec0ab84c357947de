#!/bin/sh
# Tests the sample app and writes a JUnit XML report.
set -u
pass=0; fail=0; cases=""
check() {
  name="$1"; shift
  if "$@" >/dev/null 2>&1; then
    pass=$((pass + 1)); cases="$cases<testcase name=\"$name\"/>"
  else
    fail=$((fail + 1)); cases="$cases<testcase name=\"$name\"><failure message=\"failed\"/></testcase>"
  fi
}
check greets       sh -c './app.sh world | grep -q "hello, world"'
check default_name sh -c './app.sh | grep -q "hello, you"'
check exit_status  sh -c './app.sh x'
echo "<testsuite name=\"app\" tests=\"$((pass + fail))\" failures=\"$fail\">$cases</testsuite>" > report.xml
echo "report=report.xml" >> "$PIPELINE_EXPORTS"
echo "$pass passed, $fail failed"
