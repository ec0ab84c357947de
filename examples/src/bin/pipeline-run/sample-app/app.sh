#!/bin/sh
# The sample app.
echo "hello, ${1:-you}"
