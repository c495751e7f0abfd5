#!/usr/bin/env bash
# Runs the tests on SwiftShader, the CPU Vulkan driver Debian's chromium package ships (subgroup size 4, no
# shader-f16), as a second adapter beside the machine's default: nothing in the engine or its tests may
# assume one adapter. Arguments go to vitest (a file, -t PATTERN, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
icd=${VICREG_SWIFTSHADER_ICD:-/usr/lib/chromium/vk_swiftshader_icd.json}
if [ ! -f "$icd" ]; then
  echo "test:swiftshader: no $icd (scripts/setup.sh installs Debian's chromium, which ships it; or set VICREG_SWIFTSHADER_ICD)" >&2
  exit 2
fi
# The training runs of test/train.test.ts take over 15 minutes here (the quick run alone), past what CI
# can give them; they run on the default adapter. SwiftShader still runs the training's WGSL layers
# (test/train-mlp.test.ts) and, in Chromium, the demo page's Train button (test/browser.test.ts).
export VICREG_SKIP_TRAINING_RUNS="${VICREG_SKIP_TRAINING_RUNS-the training runs take over 15 minutes on SwiftShader; they run on the default adapter, and their WGSL layers here in test/train-mlp.test.ts}"
VK_ICD_FILENAMES="$icd" npx vitest run "$@"
