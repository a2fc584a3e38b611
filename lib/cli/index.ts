#!/usr/bin/env node
/** The segtorch command line: `segtorch demo`, `segtorch info`. */
import * as path from 'path'
import { parseArgs } from 'util'
import { backend, version } from '../index'
import { runDemo } from './demo'

const HELP = `segtorch ${version}: semantic segmentation on libtorch

Usage:
  segtorch demo [--data DIR] [--out DIR] [--steps N] [--batch N] [--crop N] [--base-channels N] [--lr X]
      Train FCN-ResNet18 on the ISBI 2012 membrane images shipped with segtorch, report IoU on
      held-back images, predict the test images and write their masks (PNG) to --out.
  segtorch info
      Backend: libtorch version, CUDA, oneDNN, threads, bf16, architectures.
`

async function main (argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(HELP)
    return 0
  }
  if (command === 'info') {
    process.stdout.write(JSON.stringify({ version, ...backend() }, null, 2) + '\n')
    return 0
  }
  if (command === 'demo') {
    const { values } = parseArgs({
      args: rest,
      options: {
        data: { type: 'string', default: path.join(__dirname, '..', '..', 'data', 'membrane') },
        out: { type: 'string', default: path.join(process.cwd(), 'runs', 'demo') },
        steps: { type: 'string', default: '300' },
        'base-channels': { type: 'string', default: '16' },
        lr: { type: 'string', default: '0.001' },
        batch: { type: 'string', default: '4' },
        crop: { type: 'string', default: '256' },
        holdout: { type: 'string', default: '5' },
        seed: { type: 'string', default: '1' }
      },
      strict: true
    })
    const int = (name: string, v: string | undefined, min: number): number => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < min) throw new RangeError(`Expected an integer >= ${min} for --${name} but received ${v}`)
      return n
    }
    await runDemo({
      data: values.data as string,
      out: values.out as string,
      steps: int('steps', values.steps, 1),
      batch: int('batch', values.batch, 2),
      crop: int('crop', values.crop, 32),
      holdout: int('holdout', values.holdout, 1),
      seed: int('seed', values.seed, 0),
      baseChannels: int('base-channels', values['base-channels'], 1),
      lr: (() => { const v = Number(values.lr); if (!(v > 0 && v < 1)) throw new RangeError(`Expected a learning rate in (0, 1) for --lr but received ${values.lr}`); return v })(),
      log: (line) => process.stdout.write(line + '\n')
    })
    return 0
  }
  process.stderr.write(`segtorch: unknown command '${command}'\n\n${HELP}`)
  return 2
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (err) => {
  process.stderr.write(`segtorch: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exitCode = 1
})
