// A reporter beside vitest's default: at the end of a run it names every skipped test, grouped by why
// (the "[skipped: ...]" part of its title or of an enclosing suite's), so that a test that cannot run on
// this adapter is never skipped silently.
import type { Reporter, TestModule } from 'vitest/node';

const REASON = / \[skipped: ([^\]]*)\]/;

export default class SkippedTests implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>) {
    const byReason = new Map<string, string[]>();
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        if (t.result().state !== 'skipped') continue;
        const reason = REASON.exec(t.fullName)?.[1] ?? 'skipped in the test file';
        const name = `${m.moduleId.replace(/^.*\/test\//, 'test/')} > ${t.fullName.replace(REASON, '')}`;
        byReason.set(reason, [...(byReason.get(reason) ?? []), name]);
      }
    }
    const count = [...byReason.values()].reduce((a, names) => a + names.length, 0);
    if (count === 0) return;
    const lines = [`\n${count} tests skipped on this adapter:`];
    for (const [reason, names] of byReason) lines.push(`  because ${reason}:`, ...names.map((n) => `    - ${n}`));
    console.log(lines.join('\n'));
  }
}
