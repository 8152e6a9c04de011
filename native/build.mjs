// `npm run build:native`: builds the optional native engine (native/kernels.cc) with node-gyp and
// copies it to build/Release/charlstm_native.node. It never fails the surrounding build: when
// anything is missing (a C++ compiler, make, python, Node's headers, an x86-64 machine) it prints
//   native engine not built (<reason>); the WebAssembly engine will be used
// and exits 0. The full node-gyp output goes to build/native-build.log.
//
// binding.gyp lives in native/ (not at the package root) on purpose: a root binding.gyp makes npm
// add an implicit `install: node-gyp rebuild` script, and `node-gyp rebuild` at the root would
// also wipe build/ (build/kernels.wasm included) on its `clean` step.
//
// In an installed package (`node node_modules/charlstm/native/build.mjs`) this is the fallback
// where the package has no prebuilt binary for the platform (native/prebuild.mjs makes those at
// pack time); src/engine/native.ts prefers an addon built here over a prebuilt one.
//
// Options: CHARLSTM_SKIP_NATIVE=1 skips the build; extra arguments go to node-gyp.

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const outDir = join(root, 'build', 'Release');
const target = join(outDir, 'charlstm_native.node');
const log = join(root, 'build', 'native-build.log');

function skip(reason) {
  console.log(`native engine not built (${reason}); the WebAssembly engine will be used`);
  // a stale addon from an earlier build would not match these sources
  rmSync(target, { force: true });
  process.exit(0);
}

if (process.env.CHARLSTM_SKIP_NATIVE && process.env.CHARLSTM_SKIP_NATIVE !== '0')
  skip('CHARLSTM_SKIP_NATIVE is set');
if (process.arch !== 'x64') skip(`the native kernels are for x86-64, this is ${process.arch}`);

// node-gyp: npm's own copy (npm sets npm_config_node_gyp for scripts), else one next to npm, else
// an installed package.
function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  const npmCli = process.env.npm_execpath;
  if (npmCli)
    candidates.push(join(dirname(npmCli), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(
    join(
      dirname(process.execPath),
      '..',
      'lib',
      'node_modules',
      'npm',
      'node_modules',
      'node-gyp',
      'bin',
      'node-gyp.js',
    ),
  );
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed
  }
  return candidates.find((p) => p && existsSync(p));
}

const nodeGyp = findNodeGyp();
if (!nodeGyp) skip('node-gyp not found');

// The toolchain node-gyp's Makefile will use: $CXX (default g++ on Linux, c++ elsewhere) and make.
function works(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'ignore', shell: false });
  return !r.error && r.status === 0;
}
if (process.platform !== 'win32') {
  const cxx = process.env.CXX || (process.platform === 'linux' ? 'g++' : 'c++');
  const cxxCmd = cxx.trim().split(/\s+/)[0];
  if (!works(cxxCmd, ['--version'])) skip(`no working C++ compiler: \`${cxx} --version\` failed`);
  if (!works('make', ['--version'])) skip('make not found');
}

// Node's headers: those of the running installation when it ships them (include/node next to
// bin/node), so that nothing is downloaded; otherwise node-gyp's usual cache/download.
const args = [nodeGyp, 'rebuild', '--directory', here];
const prefix = join(dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) {
  args.push(`--nodedir=${prefix}`);
}
args.push(...process.argv.slice(2));

const run = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', env: process.env });
mkdirSync(dirname(log), { recursive: true });
writeFileSync(
  log,
  `$ ${process.execPath} ${args.join(' ')}\n${run.stdout ?? ''}${run.stderr ?? ''}${run.error ? String(run.error) : ''}\n`,
);

if (run.status !== 0) {
  const text = `${run.stdout ?? ''}\n${run.stderr ?? ''}`;
  let reason = run.error ? run.error.message : `node-gyp exited with ${run.status ?? run.signal}`;
  if (
    /common\.gypi not found|node_api\.h: No such file|Could not find node headers|getaddrinfo|ENOTFOUND|ECONNREFUSED|ETIMEDOUT/i.test(
      text,
    )
  ) {
    reason = "Node's headers are not available";
  } else if (/ERR! find Python/.test(text)) {
    reason = 'python not found';
  } else if (/\berror:/.test(text)) {
    reason = 'compile error';
  }
  skip(`${reason}; see build/native-build.log`);
}

const built = join(here, 'build', 'Release', 'charlstm_native.node');
if (!existsSync(built)) skip('node-gyp produced no addon; see build/native-build.log');
mkdirSync(outDir, { recursive: true });
// copy, then rename: a process that has the old addon loaded keeps its (unchanged) file
const temp = `${target}.${process.pid}.tmp`;
copyFileSync(built, temp);
renameSync(temp, target);

// Check that it loads here (it reports, rather than fails, on a CPU without AVX2/FMA).
try {
  const addon = createRequire(import.meta.url)(target);
  console.log(
    addon.supported
      ? 'native engine built: build/Release/charlstm_native.node'
      : `native engine built, but unavailable here (${addon.reason}); the WebAssembly engine will be used`,
  );
} catch (err) {
  skip(`the built addon does not load: ${err.message}`);
}
