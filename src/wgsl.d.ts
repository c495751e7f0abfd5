// WGSL sources are imported as text (esbuild --loader:.wgsl=text; the same loader in vitest.config.ts).
declare module '*.wgsl' {
  const source: string;
  export default source;
}
