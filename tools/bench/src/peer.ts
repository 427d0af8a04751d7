/**
 * Installs the pinned peer runtime (node-llama-cpp, llama.cpp's Node binding with prebuilt CPU binaries) outside the
 * workspace, in tools/bench/.peer/, only when it is missing. Its own package.json keeps npm from walking up into the
 * workspace.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const PEER_PACKAGE = 'node-llama-cpp';
export const PEER_VERSION = '3.21.1';

export function installedPeerVersion(peerDir: string): string | undefined {
  try {
    const pkg = join(peerDir, 'node_modules', PEER_PACKAGE, 'package.json');
    return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
  } catch {
    return undefined;
  }
}

export function ensurePeer(peerDir: string, log: (msg: string) => void): void {
  if (installedPeerVersion(peerDir) === PEER_VERSION) return;
  mkdirSync(peerDir, { recursive: true });
  const pkg = join(peerDir, 'package.json');
  if (!existsSync(pkg))
    writeFileSync(
      pkg,
      `${JSON.stringify({ name: 'mnemo-bench-peer', private: true, type: 'module' }, null, 2)}\n`,
    );
  log(`installing ${PEER_PACKAGE}@${PEER_VERSION} into ${peerDir} (about 40 s, 730 MB)`);
  // No install scripts: the prebuilt CPU binary ships in an optional dependency and is loaded with build: 'never'.
  const r = spawnSync(
    'npm',
    ['install', '--no-audit', '--no-fund', '--ignore-scripts', '-E', `${PEER_PACKAGE}@${PEER_VERSION}`],
    { cwd: peerDir, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (r.status !== 0 || installedPeerVersion(peerDir) !== PEER_VERSION)
    throw new Error(`npm install of ${PEER_PACKAGE}@${PEER_VERSION} in ${peerDir} failed (exit ${r.status})`);
}
