import { describeArchitecture } from './shared'

describeArchitecture({
  arch: 'fcn',
  cases: [
    { options: { arch: 'fcn', backbone: 'resnet18', numClasses: 3, outputStride: 8 } },
    { options: { arch: 'fcn', backbone: 'resnet18', numClasses: 2, inChannels: 1, outputStride: 32, aux: true }, trainOutputs: ['aux'] }
  ],
  badOptions: [
    { options: { backbone: 'vgg19' }, error: RangeError, pattern: /resnet18.*for backbone/ },
    { options: { outputStride: 4 }, error: RangeError, pattern: /8, 16, 32 for outputStride/ }
  ]
})
