// The package as its users get it: `npm pack` (prepack builds the native engine into
// prebuilds/<platform>-<arch>/, prepare builds dist/, the wasm kernels and the web app), then
// `npm install <tarball>` into an empty project, the way a user installs the published package:
// no install script of ours runs there, and no network other than the npm registry (or npm's
// cache) is used. Then, in that project: `charlstm --version`, a one-epoch run on a tiny text and
// the engine it reports (native from the prebuilt binary where this machine builds the addon and
// the CPU has AVX2/FMA, WebAssembly otherwise), and the fallback: without the prebuilt binary the
// WebAssembly engine runs and says how to build the addon; `node native/build.mjs` in the
// installed package builds it from source, and the engine then runs on that.
//
// It packs a copy of this working tree (build outputs left out, node_modules linked), so that the
// test never rewrites the repository's own build/, dist/ or web/dist. About 25 s on the 2-core
// development machine, most of it the build in `npm pack` and `npm install`.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

import { ENV_DATA_DIR, ENV_HOME } from '../src/defaults.ts';
import { NATIVE_ADDON_URL, nativeAvailable } from '../src/engine/native.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const PKG = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
};
const PLATFORM = `${process.platform}-${process.arch}`;
const WIN = process.platform === 'win32';
const NPM = WIN ? 'npm.cmd' : 'npm';
const NPX = WIN ? 'npx.cmd' : 'npx';

const npmFound = (() => {
  const r = spawnSync(NPM, ['--version'], { encoding: 'utf8', shell: WIN });
  return !r.error && r.status === 0;
})();

// This machine builds the addon (npm ci's prepare did, into build/Release), so `npm pack` must
// ship it as prebuilt; and the native engine runs here when the CPU has AVX2/FMA.
const expectPrebuilt = existsSync(fileURLToPath(NATIVE_ADDON_URL));
const expectNative = expectPrebuilt && nativeAvailable();

const work = mkdtempSync(path.join(os.tmpdir(), 'charlstm-package-'));
const project = path.join(work, 'project');
const installed = path.join(project, 'node_modules', PKG.name);

/** The environment of a user's shell: no npm lifecycle variables, a fresh CHARLSTM_HOME. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^npm_/i.test(k) && k !== 'INIT_CWD' && k !== ENV_DATA_DIR) env[k] = v;
  }
  return { ...env, [ENV_HOME]: path.join(work, 'home'), CHARLSTM_DEBUG: '', ...extra };
}

interface Result {
  code: number | null;
  out: string; // stdout and stderr together
  stdout: string;
}

function run(cmd: string, args: string[], cwd: string, timeoutMs = 120_000): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: userEnv(), shell: WIN });
    let out = '';
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, stdout });
    });
  });
}

function ok(r: Result, what: string): Result {
  assert.equal(r.code, 0, `${what} exited with ${r.code}:\n${r.out.slice(-4000)}`);
  return r;
}

/** What the installed package's loader says about the native addon. */
async function engineInfo(): Promise<{
  info: { origin: string; path: string } | null;
  reason: string | null;
}> {
  const script =
    `import { nativeAddonInfo, nativeUnavailableReason } from '${PKG.name}';\n` +
    'console.log(JSON.stringify({ info: nativeAddonInfo() ?? null, ' +
    'reason: nativeUnavailableReason() ?? null }));\n';
  writeFileSync(path.join(project, 'engine-info.mjs'), script);
  const r = ok(await run(process.execPath, ['engine-info.mjs'], project), 'engine-info.mjs');
  return JSON.parse(r.stdout.trim()) as {
    info: { origin: string; path: string } | null;
    reason: string | null;
  };
}

/** A one-epoch run on the tiny text; returns its engine line. */
async function trainOnce(out: string): Promise<string> {
  const r = ok(
    await run(
      NPX,
      [
        '--no',
        '--',
        'charlstm',
        'train',
        '--corpus',
        'tiny.txt',
        '--epochs',
        '1',
        '--units',
        '8',
        '--sample-length',
        '10',
        '--seed',
        '1',
        '--out',
        out,
      ],
      project,
    ),
    'charlstm train',
  );
  assert.match(r.out, /Epoch 1\/1/);
  assert.ok(existsSync(path.join(project, out, 'model.json')), 'no model.json written');
  const line = /^engine: .*$/m.exec(r.out);
  assert.ok(line, `no engine line in:\n${r.out}`);
  return line[0];
}

describe(
  'the packed package installed in an empty project',
  { skip: !npmFound && 'npm not found' },
  () => {
    let tarball = '';

    before(async () => {
      // a copy of the working tree without build outputs, installs or git data
      const src = path.join(work, 'src');
      const skip = new Set(
        ['.git', 'node_modules', 'build', 'dist', 'web/dist', 'prebuilds', 'native/build']
          .concat(['models', 'coverage', 'test-artifacts', '.cache'])
          .map((p) => path.join(REPO, p)),
      );
      cpSync(REPO, src, { recursive: true, filter: (p) => !skip.has(path.resolve(p)) });
      symlinkSync(path.join(REPO, 'node_modules'), path.join(src, 'node_modules'), 'junction');
      const packs = path.join(work, 'packs');
      mkdirSync(packs);
      ok(await run(NPM, ['pack', '--pack-destination', packs], src, 300_000), 'npm pack');
      const files = readdirSync(packs).filter((f) => f.endsWith('.tgz'));
      assert.equal(files.length, 1, `npm pack wrote ${files.join(', ')}`);
      tarball = path.join(packs, files[0]!);
      assert.ok(!existsSync(path.join(src, 'prebuilds', PLATFORM)), 'postpack left prebuilds/');
    });

    after(() => rmSync(work, { recursive: true, force: true }));

    it('installs from the tarball, with the files it runs on and no install script', async () => {
      mkdirSync(project);
      writeFileSync(
        path.join(project, 'package.json'),
        JSON.stringify({ name: 'charlstm-user', version: '1.0.0', private: true }),
      );
      ok(
        await run(
          NPM,
          ['install', tarball, '--no-audit', '--no-fund', '--prefer-offline'],
          project,
          300_000,
        ),
        'npm install',
      );
      for (const f of [
        'bin/charlstm.js',
        'dist/index.js',
        'dist/cli/main.js',
        'build/kernels.wasm',
        'build/kernels-relaxed.wasm',
        'web/dist/index.html',
        'native/kernels.cc',
        'native/binding.gyp',
        'native/build.mjs',
      ]) {
        assert.ok(existsSync(path.join(installed, f)), `the package lacks ${f}`);
      }
      assert.ok(
        !existsSync(path.join(installed, 'build', 'Release')),
        'a locally built addon was packed',
      );
      assert.ok(
        !existsSync(path.join(installed, 'native', 'build')),
        "node-gyp's build folder was packed",
      );
      const prebuilt = path.join(installed, 'prebuilds', PLATFORM, 'charlstm_native.node');
      assert.equal(
        existsSync(prebuilt),
        expectPrebuilt,
        expectPrebuilt
          ? `this machine builds the addon, but the package has no ${path.relative(installed, prebuilt)}`
          : 'a prebuilt addon was packed on a machine that does not build one',
      );
      const manifest = JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8')) as {
        scripts?: Record<string, string>;
      };
      for (const s of ['preinstall', 'install', 'postinstall']) {
        assert.equal(manifest.scripts?.[s], undefined, `the package has an ${s} script`);
      }
      writeFileSync(
        path.join(project, 'tiny.txt'),
        Array.from(
          { length: 120 },
          (_, i) => `the ${['quick', 'lazy', 'brown'][i % 3]} fox jumps over the dog. `,
        ).join(''),
      );
    });

    it('charlstm --version', async () => {
      const r = ok(
        await run(NPX, ['--no', '--', 'charlstm', '--version'], project),
        'charlstm --version',
      );
      assert.equal(r.stdout.trim(), PKG.version);
    });

    it(`trains an epoch on the ${expectNative ? 'native engine, prebuilt' : 'WebAssembly engine'}`, async () => {
      const line = await trainOnce('out-prebuilt');
      assert.match(
        line,
        expectNative ? /^engine: native \(AVX2\/FMA\)/ : /^engine: WebAssembly SIMD/,
      );
      const { info, reason } = await engineInfo();
      if (expectNative) {
        assert.equal(info?.origin, 'prebuilt', `loaded ${JSON.stringify(info)}`);
        assert.equal(
          path.resolve(info.path),
          path.resolve(installed, 'prebuilds', PLATFORM, 'charlstm_native.node'),
        );
      } else {
        assert.equal(info, null);
        assert.ok(reason, 'no reason given for the missing native engine');
      }
    });

    it('without a prebuilt binary: WebAssembly, then native/build.mjs builds the addon from source', async (t) => {
      if (!expectNative) {
        t.skip('the native engine does not build or run on this machine');
        return;
      }
      const prebuilds = path.join(installed, 'prebuilds');
      renameSync(prebuilds, `${prebuilds}.off`);
      const none = await engineInfo();
      assert.equal(none.info, null);
      assert.match(
        none.reason ?? '',
        new RegExp(`no prebuilt addon for ${PLATFORM}.*native/build\\.mjs`),
      );
      assert.match(await trainOnce('out-wasm'), /^engine: WebAssembly SIMD/);

      ok(
        await run(
          process.execPath,
          [path.join(installed, 'native', 'build.mjs')],
          project,
          300_000,
        ),
        'native/build.mjs',
      );
      assert.ok(existsSync(path.join(installed, 'build', 'Release', 'charlstm_native.node')));
      const built = await engineInfo();
      assert.equal(built.info?.origin, 'source', `loaded ${JSON.stringify(built.info)}`);
      assert.match(await trainOnce('out-source'), /^engine: native \(AVX2\/FMA\)/);
      renameSync(`${prebuilds}.off`, prebuilds);
    });
  },
);
