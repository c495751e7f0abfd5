// Types of serve.mjs, for test/browser.test.ts.
export declare function serveStatic(root: string, port?: number): Promise<{ url: string; close(): Promise<void> }>;
