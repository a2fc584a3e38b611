#include "export/export.h"

#include <torch/script.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <functional>
#include <sstream>
#include <unordered_map>

#include <ATen/CPUGeneratorImpl.h>

#include "base/errors.h"
#include "blocks/resize.h"
#include "infer/folded_net.h"
#include "io/module_state.h"

namespace segtorch {

namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;
namespace aten = c10::aten;
namespace prim = c10::prim;
namespace attr = c10::attr;

TensorKey KeyOf(const at::Tensor& t) { return {t.data_ptr(), t.numel()}; }

std::map<TensorKey, std::pair<std::string, bool>> TensorNames(torch::nn::Module& net) {
  std::map<TensorKey, std::pair<std::string, bool>> names;
  for (const auto& kv : net.named_parameters()) names.emplace(KeyOf(kv.value()), std::make_pair(kv.key(), false));
  for (const auto& kv : net.named_buffers()) names.emplace(KeyOf(kv.value()), std::make_pair(kv.key(), true));
  // Folded biases of convolutions that had none: set on the module, not registered (infer/fold.h).
  for (const auto& kv : net.named_modules()) {
    if (auto* conv = kv.value()->as<torch::nn::Conv2d>()) {
      if (conv->bias.defined()) names.emplace(KeyOf(conv->bias), std::make_pair(kv.key() + ".bias", false));
    }
  }
  return names;
}

// The eval-mode forward of `net` (whose weights are of type `dtype`) on float32 x, in `dtype`, with
// float32 logits.
at::Tensor Forward(SegmentationModel& net, const at::Tensor& x, at::ScalarType dtype) {
  if (dtype == at::kFloat) return net.forward(x).out;
  return net.forward(x.to(dtype)).out.to(at::kFloat);
}

// Forward(net, x, dtype) traced (x's sizes multiples of the network's input multiple).
std::shared_ptr<Graph> Trace(SegmentationModel& net, const at::Tensor& x, at::ScalarType dtype) {
  auto fn = [&net, dtype](torch::jit::Stack in) -> torch::jit::Stack { return {Forward(net, in.at(0).toTensor(), dtype)}; };
  auto traced = torch::jit::tracer::trace({x}, fn, [](const torch::autograd::Variable&) { return std::string(); },
                                          /*strict=*/false, /*force_outplace=*/true);
  return traced.first->graph;
}

std::vector<Node*> NodesOf(Graph& g) {
  std::vector<Node*> v;
  for (Node* n : g.nodes()) v.push_back(n);
  return v;
}

std::vector<int64_t> Sizes(const Value* v) {
  auto t = v->type()->cast<c10::TensorType>();
  if (!t) return {};
  auto s = t->sizes().concrete_sizes();
  return s ? *s : std::vector<int64_t>();
}

// A size of the graph as an expression of a tensor's size: size(v, dim), times or divided by f.
struct SizeExpr {
  Value* v = nullptr;
  int64_t dim = 0;
  enum Kind { kSame, kTimes, kFloorDiv, kCeilDiv } kind = kSame;
  int64_t f = 1;
};

// Constant sizes that differ between traces of the same network at different sizes, rewritten in
// the first trace as sizes of its tensors. A size is related to a tensor's size (or that times or
// divided by 2..32) only when the relation holds in every trace.
class SizeRewriter {
 public:
  explicit SizeRewriter(const std::vector<std::shared_ptr<Graph>>& traces) : a_(*traces.at(0)) {
    for (const auto& g : traces) nodes_.push_back(NodesOf(*g));
    inputs_.resize(traces.size());
    for (size_t t = 0; t < traces.size(); ++t) inputs_[t] = traces[t]->inputs()[0];
    for (size_t i = 0; i < nodes_[0].size(); ++i) position_[nodes_[0][i]] = static_cast<int64_t>(i);
  }

  // "" when done, else why the graph cannot be made size-independent.
  std::string Run() {
    const auto& first = nodes_[0];
    for (size_t t = 1; t < nodes_.size(); ++t) {
      if (nodes_[t].size() != first.size()) return "the network runs different operations at different input sizes";
      for (size_t i = 0; i < first.size(); ++i) {
        Node* na = first[i];
        Node* nb = nodes_[t][i];
        if (na->kind() != nb->kind() || na->inputs().size() != nb->inputs().size() || na->outputs().size() != nb->outputs().size()) {
          return "the network runs different operations at different input sizes (" + std::string(na->kind().toQualString()) +
                 " / " + nb->kind().toQualString() + ")";
        }
      }
    }
    // Lists of sizes (the tracer builds each int[] argument from int constants) first: the sizes of
    // one tensor for all elements that change (a resize to another tensor's size).
    for (size_t i = 0; i < first.size(); ++i) {
      if (first[i]->kind() == prim::ListConstruct) JointList(first[i]);
    }
    for (size_t i = 0; i < first.size(); ++i) {
      if (first[i]->kind() != prim::Constant) continue;
      std::string why = Constant(i);
      if (!why.empty()) return why;
    }
    torch::jit::EliminateDeadCode(a_.block());
    return "";
  }

 private:
  std::string Constant(size_t i) {
    std::vector<c10::IValue> values;
    for (const auto& nodes : nodes_) {
      auto v = torch::jit::toIValue(nodes[i]->output());
      if (!v) return "";
      values.push_back(*v);
    }
    const c10::IValue& va = values[0];
    if (va.isTensor()) {
      for (const auto& v : values) {
        if (!v.isTensor() || v.toTensor().sizes() != va.toTensor().sizes()) return "a tensor the network creates has a size that depends on the input size";
      }
      return "";
    }
    if (va.isInt() || va.isIntList()) {
      std::vector<std::vector<int64_t>> lists;
      for (const auto& v : values) {
        if (v.isInt() != va.isInt() || v.isIntList() != va.isIntList()) return "a constant of the network depends on the input size";
        lists.push_back(v.isInt() ? std::vector<int64_t>{v.toInt()} : v.toIntVector());
        if (lists.back().size() != lists[0].size()) return "a list of sizes in the network has a length that depends on the input size";
      }
      bool same = true;
      for (const auto& l : lists) same = same && l == lists[0];
      if (same) return "";
      return ReplaceUses(nodes_[0][i], lists, /*list=*/va.isIntList());
    }
    for (const auto& v : values) {
      if (v != va) {
        if (va.isDouble()) return "a number in the network (" + std::to_string(va.toDouble()) + ") depends on the input size";
        return "a constant of the network depends on the input size";
      }
    }
    return "";
  }

  void JointList(Node* list) {
    std::vector<size_t> slots;
    std::vector<std::vector<int64_t>> changing;
    for (size_t j = 0; j < list->inputs().size(); ++j) {
      Node* c = list->inputs()[j]->node();
      auto it = position_.find(c);
      if (c->kind() != prim::Constant || it == position_.end()) continue;
      std::vector<int64_t> values;
      for (const auto& nodes : nodes_) {
        auto v = torch::jit::toIValue(nodes[it->second]->output());
        if (!v || !v->isInt()) break;
        values.push_back(v->toInt());
      }
      if (values.size() != nodes_.size() || std::all_of(values.begin(), values.end(), [&](int64_t v) { return v == values[0]; })) continue;
      slots.push_back(j);
      changing.push_back(values);
    }
    std::vector<SizeExpr> joint = FindJoint(changing, position_.at(list));
    if (joint.empty()) return;
    torch::jit::WithInsertPoint guard(list);
    for (size_t e = 0; e < slots.size(); ++e) list->replaceInput(slots[e], Emit(joint[e]));
  }

  // Each use of the constant gets its own expression, built before the user from tensors defined
  // before it. lists[t]: the constant's elements in trace t.
  std::string ReplaceUses(Node* na, const std::vector<std::vector<int64_t>>& lists, bool list) {
    std::vector<torch::jit::Use> uses = na->output()->uses();
    for (const auto& use : uses) {
      Node* user = use.user;
      auto it = position_.find(user);
      if (it == position_.end()) return "a size is used outside the traced operations";
      torch::jit::WithInsertPoint guard(user);
      // The elements that change, per trace; first one tensor whose sizes give all of them (a resize
      // to another tensor's size), else each element on its own.
      std::vector<std::vector<int64_t>> changing;
      for (size_t e = 0; e < lists[0].size(); ++e) {
        std::vector<int64_t> wanted;
        for (const auto& l : lists) wanted.push_back(l[e]);
        if (!std::all_of(wanted.begin(), wanted.end(), [&](int64_t v) { return v == wanted[0]; })) changing.push_back(wanted);
      }
      std::vector<SizeExpr> joint = FindJoint(changing, it->second);
      std::vector<Value*> elements;
      size_t next = 0;
      for (size_t e = 0; e < lists[0].size(); ++e) {
        std::vector<int64_t> wanted;
        for (const auto& l : lists) wanted.push_back(l[e]);
        if (std::all_of(wanted.begin(), wanted.end(), [&](int64_t v) { return v == wanted[0]; })) {
          elements.push_back(a_.insertConstant(wanted[0]));
          continue;
        }
        SizeExpr expr;
        if (!joint.empty()) {
          elements.push_back(Emit(joint[next++]));
          continue;
        }
        if (!Find(wanted, it->second, &expr)) {
          return std::string("the size ") + std::to_string(wanted[0]) + " given to " + user->kind().toQualString() +
                 " could not be related to the size of a tensor";
        }
        elements.push_back(Emit(expr));
      }
      Value* replacement = list ? a_.insertNode(a_.createList(c10::IntType::get(), elements))->output() : elements[0];
      user->replaceInput(use.offset, replacement);
    }
    return "";
  }

  // Output k of node i (i = -1: the graph input) as a size source: its sizes in every trace (into
  // `sizes`) and the value in the first trace's graph; nullptr when it has no sizes or its rank
  // differs between traces.
  Value* Candidate(int64_t i, size_t k, std::vector<std::vector<int64_t>>* sizes) {
    sizes->clear();
    for (size_t t = 0; t < nodes_.size(); ++t) sizes->push_back(Sizes(i < 0 ? inputs_[t] : nodes_[t][i]->outputs()[k]));
    if ((*sizes)[0].empty()) return nullptr;
    for (const auto& sz : *sizes) if (sz.size() != (*sizes)[0].size()) return nullptr;
    return i < 0 ? a_.inputs()[0] : nodes_[0][i]->outputs()[k];
  }

  using TraceSizes = std::vector<std::vector<int64_t>>;  // a tensor's sizes, per trace

  // Calls f(value, its sizes per trace) for each tensor defined before position `before`, nearest
  // first (the graph input last), until f returns true; whether one did.
  bool EachCandidate(int64_t before, const std::function<bool(Value*, const TraceSizes&)>& f) {
    for (int64_t i = before - 1; i >= -1; --i) {
      size_t count = i < 0 ? 1 : nodes_[0][i]->outputs().size();
      for (size_t k = 0; k < count; ++k) {
        TraceSizes sizes;
        Value* v = Candidate(i, k, &sizes);
        if (v && f(v, sizes)) return true;
      }
    }
    return false;
  }

  // The nearest tensor (defined before position `before`) that has, in every trace, a size equal to
  // each of `wanted` (two or more elements); empty when none has.
  std::vector<SizeExpr> FindJoint(const std::vector<std::vector<int64_t>>& wanted, int64_t before) {
    if (wanted.size() < 2) return {};
    const size_t traces = nodes_.size();
    std::vector<SizeExpr> found;
    EachCandidate(before, [&](Value* v, const TraceSizes& sizes) {
      found.clear();
      for (const auto& w : wanted) {
        // The last dims first: a resize's sizes are H and W.
        for (int64_t d = static_cast<int64_t>(sizes[0].size()) - 1; d >= 0; --d) {
          bool holds = true;
          for (size_t t = 0; t < traces && holds; ++t) holds = sizes[t][d] == w[t];
          if (holds) {
            found.push_back(SizeExpr{v, d, SizeExpr::kSame, 1});
            break;
          }
        }
        if (found.size() != static_cast<size_t>(&w - &wanted[0]) + 1) break;
      }
      return found.size() == wanted.size();
    });
    if (found.size() != wanted.size()) found.clear();
    return found;
  }

  // Searches the tensors defined before position `before`, nearest first (the graph input last):
  // first for a size equal to `wanted` in every trace, then for one that times or divided by f is.
  bool Find(const std::vector<int64_t>& wanted, int64_t before, SizeExpr* out) {
    const int64_t factors[] = {2, 4, 8, 16, 32};
    const size_t traces = nodes_.size();
    for (int pass = 0; pass < 2; ++pass) {
      bool found = EachCandidate(before, [&](Value* v, const TraceSizes& sizes) {
        for (size_t d = 0; d < sizes[0].size(); ++d) {
          auto holds = [&](const std::function<int64_t(int64_t)>& f) {
            for (size_t t = 0; t < traces; ++t) {
              if (f(sizes[t][d]) != wanted[t]) return false;
            }
            return true;
          };
          if (pass == 0) {
            if (holds([](int64_t s) { return s; })) {
              *out = SizeExpr{v, static_cast<int64_t>(d), SizeExpr::kSame, 1};
              return true;
            }
            continue;
          }
          for (int64_t f : factors) {
            if (holds([f](int64_t s) { return s * f; })) {
              *out = SizeExpr{v, static_cast<int64_t>(d), SizeExpr::kTimes, f};
              return true;
            }
            if (holds([f](int64_t s) { return s / f; })) {
              *out = SizeExpr{v, static_cast<int64_t>(d), SizeExpr::kFloorDiv, f};
              return true;
            }
            if (holds([f](int64_t s) { return (s + f - 1) / f; })) {
              *out = SizeExpr{v, static_cast<int64_t>(d), SizeExpr::kCeilDiv, f};
              return true;
            }
          }
        }
        return false;
      });
      if (found) return true;
    }
    return false;
  }

  Value* Emit(const SizeExpr& e) {
    Value* s = a_.insert(aten::size, {e.v, e.dim});
    switch (e.kind) {
      case SizeExpr::kTimes:
        return a_.insert(aten::mul, {s, e.f});
      case SizeExpr::kFloorDiv:
        return a_.insert(aten::floordiv, {s, e.f});
      case SizeExpr::kCeilDiv:
        return a_.insert(aten::floordiv, {a_.insert(aten::add, {s, e.f - 1}), e.f});
      default:
        return s;
    }
  }

  Graph& a_;
  std::vector<std::vector<Node*>> nodes_;  // per trace, in order
  std::vector<Value*> inputs_;             // per trace
  std::unordered_map<Node*, int64_t> position_;
};

// x [N, C, H, W] -> padded with zeros to multiples of k (bottom, right), body, cropped back to H, W:
// what Segmenter::Run does, as graph operations on the input's sizes.
std::shared_ptr<Graph> WithPadding(Graph& body, int64_t k) {
  auto g = std::make_shared<Graph>();
  Value* x = g->addInput("x");
  x->setType(c10::TensorType::get());
  if (k <= 1) {
    auto outs = torch::jit::insertGraph(*g, body, {x});
    g->registerOutput(outs.at(0));
    return g;
  }
  Value* h = g->insert(aten::size, {x, 2});
  Value* w = g->insert(aten::size, {x, 3});
  auto pad = [&](Value* s) { return g->insert(aten::remainder, {g->insert(aten::sub, {k, g->insert(aten::remainder, {s, k})}), k}); };
  Value* zero = g->insertConstant(0);
  Value* pads = g->insertNode(g->createList(c10::IntType::get(), {zero, pad(w), zero, pad(h)}))->output();
  Value* xp = g->insert(aten::constant_pad_nd, {x, pads, 0.0});
  auto outs = torch::jit::insertGraph(*g, body, {xp});
  Value* y = g->insert(aten::slice, {outs.at(0), 2, 0, h, 1});
  y = g->insert(aten::slice, {y, 3, 0, w, 1});
  g->registerOutput(y);
  return g;
}

at::Tensor Reference(SegmentationModel& net, const at::Tensor& x, int64_t k, at::ScalarType dtype) {
  int64_t h = x.size(2), w = x.size(3), ph = (k - h % k) % k, pw = (k - w % k) % k;
  at::Tensor xp = at::constant_pad_nd(x, {0, pw, 0, ph}, 0);
  AsTracedScope as_traced;  // the traced graph's arithmetic (resizes, poolings, no split or composed convolutions)
  return Forward(net, xp, dtype).narrow(2, 0, h).narrow(3, 0, w);
}

// Every floating parameter and buffer of `net` to `dtype`, the folded convolution biases (set on the
// modules, not registered) included.
void ConvertWeights(SegmentationModel& net, at::ScalarType dtype) {
  net.to(dtype);
  for (const auto& kv : net.named_modules()) {
    if (auto* conv = kv.value()->as<torch::nn::Conv2d>()) {
      if (conv->bias.defined() && conv->bias.scalar_type() != dtype) conv->bias = conv->bias.to(dtype);
    }
  }
}

int64_t RoundUp(int64_t v, int64_t k) { return (v + k - 1) / k * k; }

// Largest |a - b| relative to the largest |b| (at least 1).
double RelativeError(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return INFINITY;
  double scale = std::max(1.0, b.abs().max().item<double>());
  return (a - b).abs().max().item<double>() / scale;
}

std::string TypeName(const std::string& arch) {
  std::string s;
  for (char c : arch) s += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return s;
}

}  // namespace

ExportGraph TraceForExport(const ModelConfig& config, SegmentationModel& source, const torch::Device& device,
                           const ExportOptions& options) {
  if (options.height < 1 || options.width < 1) ThrowRange("Expected an example size of at least 1 x 1");
  torch::NoGradGuard no_grad;
  FoldedNet folded;
  SegmentationModel& net = folded.Get(config, source, device, /*version=*/0, /*channels_last=*/false, at::kFloat, /*prepack=*/false);
  if (options.dtype != at::kFloat && options.dtype != at::kBFloat16) ThrowRange("Expected an export precision of fp32 or bf16");
  const at::ScalarType dtype = options.dtype;
  if (dtype != at::kFloat) ConvertWeights(net, dtype);
  for (auto& p : net.parameters()) p.requires_grad_(false);
  ExportGraph e;
  e.names = TensorNames(net);
  const int64_t k = std::max<int64_t>(1, net.input_multiple());
  e.input_multiple = k;
  const int64_t c = config.in_channels;
  // Example inputs from a generator of their own: exporting leaves the global random state as it was.
  at::Generator gen = at::detail::createCPUGenerator(17);
  auto randn = [&](std::vector<int64_t> sizes) { return at::randn(sizes, gen, at::TensorOptions()).to(device); };
  const int64_t h = RoundUp(options.height, k), w = RoundUp(options.width, k);
  try {
    if (options.dynamic) {
      // Three traces whose sizes all differ: batch 2, 3 and 1; H and W grow by about u and 2u (then
      // 2u and u), u a multiple of both k and 32, so that sizes derived from H and from W differ at
      // every stride up to 32; the second and third are odd, of other remainders modulo 32, where
      // the network takes any size (k = 1), which tells floor(H / 4) from a stride-2 convolution's
      // ceil(floor(H / 2) / 2), and twice a size at 1/8 from a size at 1/4. Small inputs can
      // take other branches (a resize skipped where a pooled map already has the size it is resized
      // to): a second try traces at 4 times the example size.
      const int64_t u = RoundUp(32, k);
      std::string why;
      for (int64_t scale : {1, 4}) {
        const int64_t th = RoundUp(h * scale, k), tw = RoundUp(w * scale, k);
        std::vector<std::shared_ptr<Graph>> traces = {
            Trace(net, randn({2, c, th, tw}), dtype), Trace(net, randn({3, c, RoundUp(th + u + 9, k), RoundUp(tw + 2 * u + 11, k)}), dtype),
            Trace(net, randn({1, c, RoundUp(th + 2 * u + 3, k), RoundUp(tw + u + 7, k)}), dtype)};
        why = SizeRewriter(traces).Run();
        if (!why.empty()) continue;
        e.graph = WithPadding(*traces[0], k);
        e.dynamic = true;
        // Checked at two more sizes (batch 2 and 1, odd and even) against the network itself.
        torch::jit::Module m = ToTorchScript(e, config.arch);
        at::Tensor x;
        double err = 0;
        for (auto sizes : {std::vector<int64_t>{2, c, th + 5, tw + u + 1}, std::vector<int64_t>{1, c, th + 2 * u + 6, tw + 2 * u + 2}}) {
          x = randn(sizes);
          try {
            err = RelativeError(m.forward({x}).toTensor(), Reference(net, x, k, dtype));
          } catch (const std::exception&) {
            err = INFINITY;  // a size the graph got wrong made an operation fail
          }
          if (!(err < 1e-4)) break;
        }
        if (err < 1e-4) break;
        why = "the size-independent graph differs from the network at input size " + ShapeString(x.sizes()) +
              " (relative error " + std::to_string(err) + ")";
      }
      if (!why.empty()) {
        ThrowError("the graph of " + config.arch + " cannot be made size-independent (" + why +
                   "); export it with dynamicSize: false (batch 1 and the example size)");
      }
    } else {
      e.graph = WithPadding(*Trace(net, randn({1, c, h, w}), dtype), k);
      e.note = "a fixed-size export was asked for";
      e.batch = 1;
    }
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& ex) {
    ThrowError("tracing " + config.arch + " for export failed: " + CleanMessage(ex));
  }
  e.height = options.height;
  e.width = options.width;
  return e;
}

torch::jit::Module ToTorchScript(const ExportGraph& e, const std::string& arch) {
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  const std::string base = "__torch__.segtorch." + TypeName(arch);
  torch::jit::Module root(c10::QualifiedName(base + ".Exported"), cu);
  root.register_attribute("training", c10::BoolType::get(), false);
  std::map<std::string, torch::jit::Module> modules;  // dotted path -> submodule
  auto submodule = [&](const std::string& path) -> torch::jit::Module {
    torch::jit::Module parent = root;
    std::string prefix;
    size_t start = 0;
    while (start < path.size()) {
      size_t dot = path.find('.', start);
      std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      prefix += (prefix.empty() ? "" : "_") + part;
      auto it = modules.find(prefix);
      if (it == modules.end()) {
        torch::jit::Module child(c10::QualifiedName(base + ".m_" + TypeName(prefix)), cu);
        child.register_attribute("training", c10::BoolType::get(), false);
        parent.register_module(part, child);
        it = modules.emplace(prefix, child).first;
      }
      parent = it->second;
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    return parent;
  };

  std::shared_ptr<Graph> g = e.graph->copy();
  Value* self = g->insertInput(0, "self");
  self->setType(root.type());
  std::vector<Node*> constants;
  for (Node* n : g->nodes()) {
    if (n->kind() == prim::Constant && n->output()->type()->kind() == c10::TypeKind::TensorType) constants.push_back(n);
  }
  for (Node* n : constants) {
    at::Tensor t = n->t(attr::value);
    auto it = e.names.find(KeyOf(t));
    if (it == e.names.end()) continue;
    const std::string& name = it->second.first;
    size_t dot = name.rfind('.');
    std::string path = dot == std::string::npos ? "" : name.substr(0, dot), leaf = name.substr(dot == std::string::npos ? 0 : dot + 1);
    torch::jit::Module owner = path.empty() ? root : submodule(path);
    if (!owner.hasattr(leaf)) owner.register_parameter(leaf, t, it->second.second);
    torch::jit::WithInsertPoint guard(n);
    Value* v = self;
    size_t start = 0;
    while (true) {
      size_t d = name.find('.', start);
      v = g->insertGetAttr(v, name.substr(start, d == std::string::npos ? std::string::npos : d - start));
      if (d == std::string::npos) break;
      start = d + 1;
    }
    n->output()->replaceAllUsesWith(v);
    n->destroy();
  }
  auto fn = cu->create_function(c10::QualifiedName(*root.type()->name(), "forward"), g);
  root.type()->addMethod(fn);
  return root;
}

void SaveTorchScript(const ExportGraph& e, const std::string& arch, const std::string& path, const std::string& metadata) {
  std::ostringstream out;
  try {
    ToTorchScript(e, arch).save(out, {{"segtorch.json", metadata}});
  } catch (const std::exception& ex) {
    ThrowError("cannot write the TorchScript module: " + CleanMessage(ex));
  }
  const std::string bytes = out.str();
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) ThrowError("cannot create " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    done += static_cast<size_t>(w);
  }
  int err = done == bytes.size() ? (::fsync(fd) == 0 ? 0 : errno) : errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    ThrowError("cannot write " + path + ": " + std::strerror(err));
  }
}

GraphDescription Describe(const ExportGraph& e) {
  GraphDescription d;
  std::unordered_map<const Value*, int64_t> ids;
  auto id = [&](const Value* v) {
    auto it = ids.find(v);
    if (it != ids.end()) return it->second;
    int64_t i = static_cast<int64_t>(d.values.size());
    ids.emplace(v, i);
    GraphDescription::ValueInfo info;
    info.type = v->type()->annotation_str();
    if (auto t = v->type()->cast<c10::TensorType>()) {
      info.type = "Tensor";
      info.sizes = Sizes(v);
      if (t->scalarType()) info.dtype = c10::toString(*t->scalarType());
    }
    d.values.push_back(std::move(info));
    return i;
  };
  Graph& g = *e.graph;
  d.input = id(g.inputs().at(0));
  for (Node* n : g.nodes()) {
    GraphDescription::NodeInfo info;
    info.kind = n->kind().toQualString();
    for (const Value* v : n->inputs()) info.inputs.push_back(id(v));
    for (const Value* v : n->outputs()) info.outputs.push_back(id(v));
    if (n->kind() == prim::Constant) {
      auto v = torch::jit::toIValue(n->output());
      if (v) info.constant = *v;
      if (v && v->isTensor()) {
        auto it = e.names.find(KeyOf(v->toTensor()));
        if (it != e.names.end()) info.name = it->second.first;
      }
    }
    if (!n->blocks().empty()) ThrowError(std::string("the exported graph has control flow (") + info.kind + "), which export does not handle");
    d.nodes.push_back(std::move(info));
  }
  d.output = id(g.outputs().at(0));
  return d;
}

}  // namespace segtorch
