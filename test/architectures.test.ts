import * as assert from 'assert'
import { ARCHITECTURES, backend } from '../lib'

describe('the table of architectures', () => {
  it('lists the same architectures as the native registry (backend().architectures)', () => {
    assert.deepStrictEqual(Object.keys(ARCHITECTURES).sort(), [...backend().architectures].sort())
  })
})
