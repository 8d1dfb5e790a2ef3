// Shared by the browser tests: a static file server on 127.0.0.1 (any root,
// e.g. public/ or a folder laid out like the Hugging Face hub) and a headless
// Debian Chromium driven by playwright-core, with the flags this machine
// needs (no sandbox as root, no background networking).
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const publicDir = path.join(repoRoot, 'public');

const mimeTypes = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.map': 'application/json',
};

// Serves `root` on an ephemeral port; supports Range requests (bytes=a-b).
// `root` is a folder, or mounts {'/': publicDir, '/hub/': hubDir, ...}: the
// longest matching prefix wins, so tests can put a hub-layout folder or a
// built-in model beside the page on the same origin. Every request is
// recorded in `requests` ({url, status, bytes, authorization}). options.slow(pathname)
// may return a rate in bytes/s to trickle that file (progress and cancel
// tests); options.headers go on every file's response (ISOLATION: a
// cross-origin isolated page, which runs the threaded core).
export const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
export async function startServer(root = publicDir, options = {}) {
  const mounts = Object.entries(typeof root === 'string' ? { '/': root } : root)
    .map(([prefix, dir]) => [prefix.endsWith('/') ? prefix : `${prefix}/`, path.resolve(dir)])
    .sort((a, b) => b[0].length - a[0].length);
  const requests = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    let pathname;
    try {
      pathname = decodeURIComponent(url.pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    const mount = mounts.find(([prefix]) => `${pathname}/`.startsWith(prefix));
    if (!mount) {
      res.writeHead(404).end('not found');
      requests.push({ url: req.url, status: 404 });
      return;
    }
    const [prefix, dir] = mount;
    let file = path.normalize(path.join(dir, pathname.slice(prefix.length)));
    if (file !== dir && !file.startsWith(dir + path.sep)) {
      res.writeHead(403).end();
      return;
    }
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    if (!fs.existsSync(file)) {
      res.writeHead(404).end('not found');
      requests.push({ url: req.url, status: 404 });
      return;
    }
    const size = fs.statSync(file).size;
    const headers = {
      ...options.headers,
      'Content-Type': mimeTypes[path.extname(file)] || 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      'Access-Control-Allow-Origin': '*',
      'Access-Control-Expose-Headers': 'Content-Range, Content-Length, Accept-Ranges',
    };
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '');
    let start = 0;
    let end = size - 1;
    if (range) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      res.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${size}`, 'Content-Length': end - start + 1 });
      requests.push({ url: req.url, status: 206, bytes: end - start + 1, range: [start, end], authorization: req.headers.authorization });
    } else {
      res.writeHead(200, { ...headers, 'Content-Length': size });
      requests.push({ url: req.url, status: 200, bytes: size, authorization: req.headers.authorization });
    }
    const rate = options.slow?.(pathname) || 0;
    if (!rate) {
      fs.createReadStream(file, { start, end }).pipe(res);
      return;
    }
    // 10 chunks a second until done or the client goes away.
    const data = fs.readFileSync(file).subarray(start, end + 1);
    const chunk = Math.max(1, Math.round(rate / 10));
    let offset = 0;
    const timer = setInterval(() => {
      if (res.destroyed || offset >= data.length) {
        clearInterval(timer);
        if (!res.destroyed) res.end();
        return;
      }
      res.write(data.subarray(offset, offset + chunk));
      offset += chunk;
    }, 100);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}/`, requests, close: () => new Promise((resolve) => server.close(resolve)) };
}

const chromiumOptions = () => ({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-quic'],
});

// One browser profile (a persistent context) that the tests' pages share.
export async function launchBrowser() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'headscope-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, chromiumOptions());
  return {
    context,
    close: async () => {
      await context.close();
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

// A browser without a profile, for pages that must arrive as a first visit
// does: each browser.newContext() starts empty (no HTTP cache, Cache API or
// compiled code) and gets its own renderer process.
export async function launchEmptyBrowser() {
  return chromium.launch(chromiumOptions());
}

// Opens a page and collects everything that went wrong in it.
export async function openPage(context, url) {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  await page.goto(url);
  return { page, problems };
}
