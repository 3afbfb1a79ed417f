#!/usr/bin/env node
import './threadpool.js'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Command } from 'commander'
import { packageRoot } from '../package-root.js'
import { registerBench } from './bench.js'
import { registerCheckConfig } from './check-config.js'
import { registerQuarantine } from './quarantine.js'
import { registerQueue } from './queue.js'
import { registerQueueAdmin } from './queue-admin.js'
import { registerRoute } from './route.js'
import { registerScan } from './scan.js'
import { registerStart } from './start.js'

const { version } = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }

const program = new Command('mailscreen')
  .description(
    'a scanning mail content filter: SMTP content filter in front of your MTA, plugin checks, durable spool',
  )
  .version(version)
  .showHelpAfterError('(run with --help for usage)')

registerStart(program)
registerCheckConfig(program)
registerQueueAdmin(registerQueue(program))
registerQuarantine(program)
registerRoute(program)
registerScan(program)
registerBench(program)

await program.parseAsync(process.argv)
