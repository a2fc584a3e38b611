// Every option reader of the boundary: plain JS objects (validated and completed in TypeScript) to
// the C++ option structs of the rooms below.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "infer/crf.h"
#include "infer/inference.h"
#include "data/augment.h"
#include "export/export.h"
#include "models/segmentation_model.h"
#include "train/losses.h"
#include "train/step.h"

namespace segtorch {

// TypeScript resolves every option and fills every default (lib/train.ts, lib/predict.ts,
// lib/crf.ts, lib/model.ts); these readers refuse a missing field with a TypeError instead of
// defaulting it. Optional fields mean "off" or "none", never a default value: classWeights, crf,
// maxBuildBytes / maxParameters, and the augmentation transforms.

// { ignoreIndex (with_ignore_index), labelSmoothing, ohemThreshold, ohemMinKept, focalGamma,
// diceSmooth, classWeights? }
LossOptions ReadLossOptions(const Napi::Object& o, bool with_ignore_index = true);

// { gaussian: { sxy, compat }, bilateral: { sxy, srgb, compat }, iterations }; enabled = true.
CrfOptions ReadCrfOptions(const Napi::Object& o);

// predict / evaluate options from JS (validated in TypeScript), one reader for every model kind.
InferOptions ReadInferOptions(const Napi::Value& v);

// exportTorchScript / exportGraph options: { height, width, dynamic, precision: 'fp32' | 'bf16' }.
ExportOptions ReadExportOptions(const Napi::Value& v);

// createModel's configuration: { arch, backbone, numClasses, inChannels, outputStride, aux, mean,
// std, device, json, maxBuildBytes, maxParameters, extra }.
ModelConfig ReadModelConfig(const Napi::Object& o);

// trainStep / checkGradients options (lib/train.ts StepOptions, resolved).
TrainStepOptions ReadStepOptions(const Napi::Value& v);

// augmentBatch options (lib/data/loader.ts).
AugmentOptions ReadAugmentOptions(const Napi::Object& o);

// Fields TypeScript always fills (TypeError when missing), and optional ones (Get*: `def` when absent).
double NumberField(const Napi::Object& o, const char* key);
int64_t IntField(const Napi::Object& o, const char* key);
std::string StringField(const Napi::Object& o, const char* key);
bool BoolField(const Napi::Object& o, const char* key);
Napi::Object ObjectField(const Napi::Object& o, const char* key);
std::vector<double> NumbersField(const Napi::Object& o, const char* key);
std::string GetString(const Napi::Object& o, const char* key, const std::string& def);
double GetNumber(const Napi::Object& o, const char* key, double def);
bool GetBool(const Napi::Object& o, const char* key, bool def);
std::vector<double> GetNumbers(const Napi::Object& o, const char* key);

}  // namespace segtorch
