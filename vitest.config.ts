import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration suites start real daemons on fixed-per-suite ports; run files one at a time
    // on this 2-core machine so timings stay meaningful and daemons do not starve each other.
    fileParallelism: false,
  },
})
