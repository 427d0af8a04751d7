declare module 'node-gyp-build' {
  /** Loads the addon of the package in `dir` (build/Release, build/Debug or prebuilds/<platform>-<arch>). */
  export default function load(dir: string): unknown;
}
