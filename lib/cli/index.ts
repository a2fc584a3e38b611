#!/usr/bin/env node
/** The segtorch command line: train, eval, predict, export, info, demo. */
import * as path from 'path'
import { Command, CommanderError } from 'commander'
import { backend, version } from '../index'
import { ARCHITECTURES } from '../models'
import { bf16FasterOn } from '../precision'
import { DemoOptions, Flips, runDemo } from './demo'
import { ExportCliOptions, runExport } from './export'
import { launch } from './launch'
import { EVAL_OPTIONS, PREDICT_OPTIONS, runEval, runPredict } from './infer'
import { addOptions, coerce, UsageError } from './options'
import { runTrain, TRAIN_OPTIONS } from './train'
import { RECIPES } from '../recipes'

const out = (line: string): void => { process.stdout.write(line + '\n') }

const EXAMPLES = `
Examples:
  segtorch train --arch pspnet --backbone resnet50 --data camvid:data/CamVid --val val --crop 360x480 --epochs 50 --out runs/psp
  segtorch train --data folder:images,masks --classes background,cell --val 0.1 --arch unet --model-option baseChannels=32 --iterations 2000
  segtorch train --config run.json --lr 0.005          (flags override the config file)
  segtorch train --resume runs/psp                     (after Ctrl-C, or with more --epochs)
  segtorch train --recipe camvid-cpu --data camvid:../shared/data/camvid --out runs/camvid
  segtorch recipes                                     (the recipes in full)
  segtorch eval runs/psp/model.segtorch --data camvid:data/CamVid#test
  segtorch predict runs/psp/model.segtorch photos/ --out masks --mode slide --crop 512
  segtorch export runs/psp/model.segtorch --format onnx --out psp.onnx
  segtorch launch --nproc-per-node 2 -- node train.js  (data-parallel: one process per rank)
  segtorch train --data camvid:data/CamVid --nproc-per-node 2 --out runs/psp2
  segtorch info`

function intOption (name: string, v: string | undefined, min: number): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < min) throw new UsageError(`Expected an integer >= ${min} for --${name} but received '${v}'`)
  return n
}

export function program (): Command {
  const p = new Command('segtorch')
  p.description(`segtorch ${version}: semantic segmentation on libtorch`)
    .version(version)
    .exitOverride()
    .showHelpAfterError('(segtorch help <command> lists its options)')
    .addHelpText('after', EXAMPLES)

  addOptions(p.command('train').description('train a model; checkpoints, history and a report go to the run folder (Ctrl-C stops resumably)'), TRAIN_OPTIONS)
    .action(async (opts: Record<string, unknown>, cmd: Command) => {
      // --nproc-per-node N: this process only launches N ranks of the same command (each sees RANK).
      const n = opts.nprocPerNode === undefined ? 1 : intOption('nproc-per-node', String(opts.nprocPerNode), 1)
      if (n > 1 && process.env.RANK === undefined) {
        const l = await launch([process.execPath, ...process.execArgv, process.argv[1], ...process.argv.slice(2)], { nprocPerNode: n })
        process.exitCode = l.code
        return
      }
      const r = await runTrain(cmd, opts, out)
      if (r.aborted) process.exitCode = 130
    })

  addOptions(p.command('eval').description('metrics of a saved model on a data set: mIoU, pixel accuracy, per-class IoU')
    .argument('<model>', 'a saved model (.segtorch) or a run folder'), EVAL_OPTIONS)
    .action(async (model: string, opts: Record<string, unknown>, cmd: Command) => { await runEval(cmd, model, opts, out) })

  addOptions(p.command('predict').description('class maps, colour masks and overlays of images')
    .argument('<model>', 'a saved model (.segtorch) or a run folder')
    .argument('<images...>', 'image files or folders (searched recursively)'), PREDICT_OPTIONS)
    .action(async (model: string, images: string[], opts: Record<string, unknown>, cmd: Command) => { await runPredict(cmd, model, images, opts, out) })

  p.command('export').description('write a saved model as TorchScript or ONNX: normalised float32 images in, logits (or labels) out')
    .argument('<model>', 'a saved model (.segtorch) or a run folder')
    .option('--format <format>', 'onnx or torchscript')
    .option('--out <file>', 'the file to write')
    .option('--opset <n>', 'ONNX opset, 13 to 18 (default 17)')
    .option('--output <what>', 'ONNX output: logits (default) or labels')
    .option('--fixed-size <HxW>', 'batch 1 and this size instead of any batch and size')
    .option('--precision <p>', 'TorchScript weights and computation: fp32 (default) or bf16 (float32 in and out)')
    .option('--json', 'print the result as JSON')
    .action(async (model: string, opts: ExportCliOptions) => { await runExport(model, opts, out) })
  p.command('launch').description('run a command as the ranks of data-parallel training (torchrun\'s environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...); stops every rank when one fails')
    .argument('<command...>', 'the command of each rank, after -- (e.g. -- node train.js)')
    .requiredOption('--nproc-per-node <n>', 'processes (ranks) on this machine')
    .option('--nnodes <n>', 'machines', '1')
    .option('--node-rank <n>', 'this machine\'s index, 0..nnodes-1', '0')
    .option('--master-addr <host>', 'the address of node 0 (rank 0 hosts the rendezvous)', '127.0.0.1')
    .option('--master-port <port>', 'its port (default: a free one on one machine, 29500 on several)')
    .action(async (command: string[], opts: Record<string, string | undefined>) => {
      const r = await launch(command, {
        nprocPerNode: intOption('nproc-per-node', opts.nprocPerNode, 1),
        nnodes: intOption('nnodes', opts.nnodes, 1),
        nodeRank: intOption('node-rank', opts.nodeRank, 0),
        masterAddr: opts.masterAddr,
        masterPort: opts.masterPort === undefined ? undefined : intOption('master-port', opts.masterPort, 1)
      })
      process.exitCode = r.code
    })

  p.command('recipes').description('the named training configurations for --recipe, in full')
    .argument('[name]', 'one recipe')
    .option('--json', 'as JSON')
    .action((name: string | undefined, opts: { json?: boolean }) => {
      if (name !== undefined && !(name in RECIPES)) throw new UsageError(`Expected a recipe name (${Object.keys(RECIPES).join(', ')}) but received '${name}'`)
      const list = Object.values(RECIPES).filter((r) => name === undefined || r.name === name)
      if (opts.json) { out(JSON.stringify(name === undefined ? RECIPES : list[0], null, 2)); return }
      for (const r of list) {
        out(`${r.name}: ${r.summary}`)
        out(`  data: ${r.data}    source: ${r.source}`)
        if ('measured' in r && r.measured) out(`  measured: ${String(r.measured)}`)
        out(`  ${Object.entries(r.options).map(([k, x]) => `${k}=${typeof x === 'object' ? JSON.stringify(x) : String(x)}`).join(' ')}`)
        out('')
      }
      out('use: segtorch train --recipe NAME --data KIND:DIR [flags that override its fields]')
    })

  p.command('info').description('backend (libtorch, CUDA, threads, bf16) and the architectures')
    .option('--json', 'as JSON')
    .action((opts: { json?: boolean }) => {
      const b = backend()
      const archs = Object.fromEntries(Object.entries(ARCHITECTURES).map(([k, s]) => [k, {
        backbones: s.backbones, defaultBackbone: s.defaultBackbone, outputStrides: s.outputStrides, aux: s.aux,
        options: Object.fromEntries(Object.entries(s.options).map(([n, o]) => [n, { type: o.type, default: o.default, ...('values' in o ? { values: o.values } : {}) }]))
      }]))
      if (opts.json) {
        out(JSON.stringify({ version, ...b, models: archs }, null, 2))
        return
      }
      out(`segtorch ${version}`)
      out(`libtorch    ${b.libtorch}`)
      out(`backend     ${b.cuda ? `CUDA (${b.cudaDevices} device${b.cudaDevices === 1 ? '' : 's'})` : 'CPU (no CUDA)'}`)
      out(`threads     ${b.threads}`)
      out(`oneDNN      ${b.mkldnn ? 'yes' : 'no'}`)
      const kind = bf16FasterOn(b.cpu.isa, b.cpu.vendor)
      out(`bf16        ${!b.bf16 ? 'not native on this CPU: precision auto = fp32' : kind === 'yes' ? 'native (AVX512-BF16 / AMX), faster than fp32: precision auto = bf16' : 'native, but no faster than fp32 on an Intel CPU without AMX: precision auto = fp32 (bf16 for MobileNetV2 predictions)'}`)
      const avx512 = b.cpu.isa !== 'AVX2' && b.cpu.isa !== 'other'
      const fp32Winograd = avx512
        ? (Number.parseInt(b.libtorch, 10) >= 2 ? "fp32: segtorch's F(4x4, 3x3), channels-last, predictions and training" : 'fp32: off with libtorch 1.x (measured slower)')
        : (b.winograd ? "fp32: NNPACK's F(6x6, 3x3) for eight networks' predictions (NCHW)" : 'fp32: off (this libtorch has no NNPACK)')
      out(`winograd    auto = ${fp32Winograd}; ${!b.prepack ? 'bf16: off (no prepacked convolutions in this libtorch)' : b.cpu.isa === 'AMX' ? "bf16: off (AMX: oneDNN's direct convolutions measured faster)" : "bf16: segtorch's F(2x2, 3x3) in predictions"}`)
      out(`cpu         ${b.cpu.model || 'unknown'} (${b.cpu.isa})`)
      out(`blas        ${b.blas.name}${b.blas.path ? ` (${b.blas.path})` : ''}${b.blas.name === 'reference' ? ': the slow reference BLAS; apt-get install libopenblas0-openmp' : ''}`)
      out('')
      out('architectures (--arch; backbones, default first; --model-option key=value):')
      const w = Math.max(...Object.keys(archs).map((k) => k.length))
      for (const [k, a] of Object.entries(archs)) {
        const bbs = [a.defaultBackbone, ...a.backbones.filter((x) => x !== a.defaultBackbone)].join(', ')
        const opts = Object.entries(a.options).map(([n, o]) => `${n}=${String(o.default)}`).join(' ')
        const compiled = b.architectures.includes(k) ? '' : ' (not compiled in)'
        out(`  ${k.padEnd(w)}  ${bbs}${opts ? `  [${opts}]` : ''}${compiled}`)
      }
    })

  // The demo's defaults are the membrane recipe's (segtorch recipes membrane).
  const mr = RECIPES.membrane.options
  p.command('demo').description('train a U-Net on the ISBI 2012 membrane images shipped with segtorch, report IoU, write masks and a report (the membrane recipe)')
    .option('--data <dir>', 'the membrane data', path.join(__dirname, '..', '..', 'data', 'membrane'))
    .option('--out <dir>', 'output folder', path.join(process.cwd(), 'runs', 'demo'))
    .option('--seconds <n>', 'seconds of training (the schedule runs over time)', String(mr.timeLimit))
    .option('--steps <n>', 'a fixed number of training steps instead of --seconds')
    .option('--loss <name>', 'loss: ce, dice, lovasz, focal, ohem', mr.loss)
    .option('--precision <p>', 'training precision: auto (bf16 where the CPU has native bf16), fp32, bf16', 'auto')
    .option('--no-tta', 'predict each image once (default: average its variants under --flips)')
    .option('--flips <set>', 'flips of the training crops and of the averaging: lr (left-right only: keeps the labels\' vertical offset learnable), d4 (all 8 flips / transpositions), none', 'lr')
    .option('--base-channels <n>', "channels of the U-Net's first level", String(mr.modelOption.baseChannels))
    .option('--model-option <key=value>', 'a U-Net option over the recipe\'s (baseChannels=16, batchNorm=true; e.g. batchNorm=false, dropout=0.5, upsampling=bilinear; repeatable)', (val: string, prev: string[] | undefined) => [...(prev ?? []), val])
    .option('--lr <x>', 'Adam learning rate (poly decay)', String(mr.lr))
    .option('--batch <n>', 'images per step', String(mr.batchSize))
    .option('--crop <n>', 'crop size', String(mr.crop[0]))
    .option('--elastic <px>', 'elastic deformation of the crops: standard deviation (pixels) of the displacements on a 3x3 grid; 0 = off', '0')
    .option('--holdout <n>', 'labelled images held back for evaluation', '5')
    .option('--seed <n>', 'seed', '1')
    .action(async (o: Record<string, string>) => {
      const lr = Number(o.lr)
      if (!(lr > 0 && lr < 1)) throw new UsageError(`Expected a learning rate in (0, 1) for --lr but received '${o.lr}'`)
      await runDemo({
        data: o.data,
        out: o.out,
        steps: o.steps === undefined ? 0 : intOption('steps', o.steps, 1),
        seconds: intOption('seconds', o.seconds, 1),
        loss: ((): DemoOptions['loss'] => {
          if (!['ce', 'dice', 'lovasz', 'focal', 'ohem'].includes(o.loss)) throw new UsageError(`Expected ce, dice, lovasz, focal or ohem for --loss but received '${o.loss}'`)
          return o.loss as DemoOptions['loss']
        })(),
        tta: o.tta as unknown as boolean,
        flips: coerce({ flags: '--flips <set>', kind: 'string', choices: ['lr', 'd4', 'none'], description: '' }, o.flips) as Flips,
        precision: ((): DemoOptions['precision'] => {
          if (!['auto', 'fp32', 'bf16'].includes(o.precision)) throw new UsageError(`Expected auto, fp32 or bf16 for --precision but received '${o.precision}'`)
          return o.precision as DemoOptions['precision']
        })(),
        batch: intOption('batch', o.batch, 2),
        crop: intOption('crop', o.crop, 32),
        elastic: coerce({ flags: '--elastic <px>', kind: 'number', min: 0, max: 64, description: '' }, o.elastic) as number,
        holdout: intOption('holdout', o.holdout, 1),
        seed: intOption('seed', o.seed, 0),
        baseChannels: intOption('base-channels', o.baseChannels, 1),
        modelOptions: { ...mr.modelOption, ...coerce({ flags: '--model-option <key=value>', kind: 'pairs', description: '' }, (o.modelOption as unknown as string[] | undefined) ?? {}) as Record<string, unknown> },
        lr,
        log: out
      })
    })
  return p
}

/** Runs the command line; resolves to the exit code (errors are printed without stack traces). */
export async function main (argv: string[]): Promise<number> {
  const p = program()
  try {
    if (argv.length === 0) {
      p.outputHelp()
      return 0
    }
    await p.parseAsync(argv, { from: 'user' })
    return typeof process.exitCode === 'number' ? process.exitCode : 0
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander printed the message (and help) already
      return ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(err.code) ? 0 : 2
    }
    process.stderr.write(`segtorch: ${err instanceof Error ? err.message : String(err)}\n`)
    if (process.env.SEGTORCH_DEBUG && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n')
    return err instanceof UsageError ? 2 : 1
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (err) => {
    process.stderr.write(`segtorch: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 1
  })
}
