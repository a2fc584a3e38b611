import * as assert from 'assert'
import * as fs from 'fs'
import * as path from 'path'

// The module graph of lib/: an edge for every `import ... from './x'` and `export ... from './x'`
// between files of lib/. Type-only imports and exports (`import type`, `export type`) are left out:
// TypeScript erases them, so they cannot make a cycle at run time (lib/fit.ts takes the Model type
// from lib/model.ts, which imports fit()).
const LIB = path.join(__dirname, '..', 'lib')

function files (dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return e.isDirectory() ? files(p) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : []
  })
}

function resolveModule (from: string, spec: string): string | undefined {
  const base = path.resolve(path.dirname(from), spec)
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts')]) if (fs.existsSync(candidate)) return candidate
  return undefined
}

export function importGraph (dir: string): Map<string, string[]> {
  const graph = new Map<string, string[]>()
  // import/export statements, possibly over several lines, up to their module string: between the
  // keyword and `from` only names, braces, commas, `*` and white space.
  const statement = /^\s*(import|export)\s+(type\s+)?([\w\s{},*$]*?\bfrom\s+)?['"](\.[^'"]+)['"]/gm
  for (const file of files(dir)) {
    const source = fs.readFileSync(file, 'utf8')
    const deps: string[] = []
    for (const m of source.matchAll(statement)) {
      if (m[2] !== undefined) continue // import type / export type
      if (m[1] === 'export' && m[3] === undefined) continue // not a re-export
      const target = resolveModule(file, m[4])
      if (target !== undefined) deps.push(target)
    }
    graph.set(file, deps)
  }
  return graph
}

export function findCycle (graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const visit = (node: string): string[] | undefined => {
    state.set(node, 'open')
    stack.push(node)
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') return [...stack.slice(stack.indexOf(next)), next]
      if (state.get(next) === undefined) {
        const cycle = visit(next)
        if (cycle) return cycle
      }
    }
    stack.pop()
    state.set(node, 'done')
    return undefined
  }
  for (const node of graph.keys()) {
    if (state.get(node) === undefined) {
      const cycle = visit(node)
      if (cycle) return cycle
    }
  }
  return undefined
}

describe('lib/ imports', () => {
  it('the reader of import statements sees imports, re-exports and multi-line imports, and skips type-only ones', () => {
    const dir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'segtorch-imports-'))
    try {
      fs.writeFileSync(path.join(dir, 'a.ts'), "import { b } from './b'\nimport type { C } from './c'\n")
      fs.writeFileSync(path.join(dir, 'b.ts'), "export { c } from './c'\nexport type { A } from './a'\n")
      fs.writeFileSync(path.join(dir, 'c.ts'), "import {\n  a,\n  x\n} from './a'\nexport const c = 1\n")
      const g = importGraph(dir)
      const name = (f: string): string => path.basename(f, '.ts')
      assert.deepStrictEqual([...g].map(([k, v]) => [name(k), v.map(name)]), [['a', ['b']], ['b', ['c']], ['c', ['a']]])
      assert.deepStrictEqual(findCycle(g)?.map(name), ['a', 'b', 'c', 'a'])
      fs.writeFileSync(path.join(dir, 'c.ts'), "import type { a } from './a'\n")
      assert.strictEqual(findCycle(importGraph(dir)), undefined)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('have no cycle (type-only imports excepted)', () => {
    const cycle = findCycle(importGraph(LIB))
    assert.strictEqual(cycle?.map((f) => path.relative(LIB, f)).join(' -> '), undefined)
  })
})
