#!/bin/sh
# Builds the sample app: a tarball of its sources, named after the version.
set -eu
version="${1:-0.0.0}"
mkdir -p dist
tar czf "dist/app-$version.tar.gz" app.sh
echo "artifact=dist/app-$version.tar.gz" >> "$PIPELINE_EXPORTS"
echo "built dist/app-$version.tar.gz"
