"""Serves public/ for web/serve.sh: Python's static file server, with the two
headers that make the page cross-origin isolated (SharedArrayBuffer), which
the threaded wasm core needs (web/worker/worker.js). A host that cannot send
them serves the same files: the page then runs the core on one thread.

Usage: python3 web/serve.py PORT DIRECTORY
"""
import functools
import http.server
import sys


class IsolatingHandler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    handler = functools.partial(IsolatingHandler, directory=directory)
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
