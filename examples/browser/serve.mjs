// A tiny static file server for the browser demo and test/browser.test.ts: the repository root, on
// 127.0.0.1 only (WebGPU needs a secure context; http on 127.0.0.1/localhost is one). No dependency.
//   node examples/browser/serve.mjs [port]     (default 8080; 0 picks a free port)
// then open http://127.0.0.1:PORT/examples/browser/ in a browser with WebGPU.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Serves files under `root`; resolves once listening, with the base URL (no trailing slash). */
export async function serveStatic(root, port = 0) {
  const base = resolve(root);
  const server = createServer(async (request, response) => {
    const send = (code, body, headers = {}) => {
      response.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', ...headers });
      response.end(request.method === 'HEAD' ? undefined : body);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') return send(405, 'GET only\n');
    const url = new URL(request.url ?? '/', 'http://localhost');
    let path;
    try {
      path = resolve(base, `.${decodeURIComponent(url.pathname)}`);
    } catch {
      return send(400, 'bad path\n');
    }
    if (path !== base && !path.startsWith(base + sep)) return send(403, 'outside the served folder\n');
    try {
      if ((await stat(path)).isDirectory()) {
        // Relative URLs in index.html need the trailing slash.
        if (!url.pathname.endsWith('/')) return send(301, '', { location: `${url.pathname}/${url.search}` });
        path = join(path, 'index.html');
      }
      const body = await readFile(path);
      send(200, body, { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    } catch {
      send(404, `not found: ${url.pathname}\n`);
    }
  });
  await new Promise((done, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', done);
  });
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, close: () => new Promise((done) => server.close(() => done())) };
}

// Run as a script: serve the repository root.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = Number(process.argv[2] ?? 8080);
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const { url } = await serveStatic(root, port);
  console.log(`serving ${root} at ${url}/ (Ctrl-C stops)`);
  console.log(`demo: ${url}/examples/browser/  (run npm run build first)`);
}
