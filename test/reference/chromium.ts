// Debian's Chromium, headless, with WebGPU on SwiftShader (its bundled CPU Vulkan, adapter "google
// swiftshader"), for the tests that run a page: the browser demo and the packed package's web app.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

// Of these, --enable-unsafe-webgpu is the one that matters on Linux (without it: "No available
// adapters"); the others: software GL (ANGLE on SwiftShader), no GPU sandbox (none works in a
// container), no network traffic of Chromium's own, a fresh profile.
const FLAGS = [
  '--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan',
  '--use-angle=swiftshader', '--disable-gpu-sandbox', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run',
];

export interface Browser {
  page: Page;
  /** The page's console errors and warnings and its uncaught exceptions, for failure messages. */
  log: string[];
  close(): Promise<void>;
}

/** Starts Chromium on a fresh profile; fails (never skips) where it is not installed, so CI cannot pass without it. */
export async function startChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed (${CHROMIUM} is missing): install it with ` +
      '`apt-get install -y chromium` (./scripts/setup.sh does this), then rerun the tests');
  }
  const userDataDir = mkdtempSync(join(tmpdir(), 'vicreg-chromium-'));
  let context: BrowserContext | undefined;
  try {
    // A persistent context is how playwright takes a --user-data-dir. ignoreDefaultArgs drops
    // playwright's own --headless, so FLAGS' --headless=new is the one in force.
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM, headless: true, ignoreDefaultArgs: ['--headless'], args: FLAGS,
    });
  } catch (error) {
    rmSync(userDataDir, { recursive: true, force: true });
    throw error;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  const log: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') log.push(`${message.type()}: ${message.text()}`);
  });
  page.on('pageerror', (error) => log.push(`exception: ${error.message}`));
  return {
    page, log,
    async close() {
      await context!.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}
