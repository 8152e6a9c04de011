// `npm pack` / `npm publish` (the prepack script): builds the native engine from these sources and
// puts the binary where an installed package looks for it,
//   prebuilds/<platform>-<arch>/charlstm_native.node
// (the prebuildify layout; src/engine/native.ts loads it when there is no build/Release addon).
// The addon uses Node-API only, so the one binary serves every Node version from 20 on. Users of
// the package then need no compiler and no install script: npm 11 does not run a dependency's
// install scripts unless the user approves them, so the package has none.
//
// Binaries for other platforms can be dropped into prebuilds/ (one folder per platform, built on
// that platform) before packing; this script only replaces the folder of the platform it runs on.
// When the native engine cannot be built here, that folder is removed and the package carries no
// binary for it (a warning says so); CHARLSTM_REQUIRE_PREBUILT=1 makes that an error instead.
//
// `node native/prebuild.mjs --clean` (the postpack script) removes this platform's folder again,
// so that a developer's tree never runs a packed binary instead of its own build.

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const platform = `${process.platform}-${process.arch}`;
const prebuilds = join(root, 'prebuilds');
const dir = join(prebuilds, platform);
const rel = `prebuilds/${platform}/charlstm_native.node`;

function clean() {
  rmSync(dir, { recursive: true, force: true });
  if (existsSync(prebuilds) && readdirSync(prebuilds).length === 0)
    rmSync(prebuilds, { recursive: true });
}

if (process.argv.includes('--clean')) {
  clean();
  process.exit(0);
}

// a fresh build, so that the packed binary is always one of these sources
const built = join(root, 'build', 'Release', 'charlstm_native.node');
const run = spawnSync(process.execPath, [join(here, 'build.mjs')], { stdio: 'inherit' });
clean();
if (run.status !== 0 || !existsSync(built)) {
  const message = `no prebuilt native engine for ${platform} in this package (it did not build here)`;
  if (process.env.CHARLSTM_REQUIRE_PREBUILT && process.env.CHARLSTM_REQUIRE_PREBUILT !== '0') {
    console.error(`error: ${message}, and CHARLSTM_REQUIRE_PREBUILT is set`);
    process.exit(1);
  }
  console.warn(`warning: ${message}; installs on ${platform} will build it or use WebAssembly`);
  process.exit(0);
}
mkdirSync(dir, { recursive: true });
copyFileSync(built, join(dir, 'charlstm_native.node'));
console.log(`prebuilt native engine packed: ${rel}`);
