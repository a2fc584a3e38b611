// bench_overhead: the C++ side of bench/overhead.js.
//
// Runs the same work as the Node benchmark without Node-API, so that the difference is the cost of
// the JS <-> native boundary and of the executor thread:
//   - a tiny forward (FCN-ResNet18, output stride 32, 2 classes, a batch of two 3x32x32 float images)
//     through segtorch::Segmenter::Forward, called in a loop on the thread that owns the model
//     ("direct"), or posted one call at a time from the main thread to a segtorch::Executor that owns
//     the model and waited for ("executor": the thread hop without Node-API), and the raw network
//     forward without Segmenter's input checks ("raw");
//   - a training step of FCN-ResNet18 (21 classes, batch 4, 3x256x256 float images, SGD lr 0.01
//     momentum 0.9) through Segmenter::TrainStep;
//   - the cost of the per-step input checks (finite check on float images, label-range check on masks).
//
// One OpenMP master thread per process. libgomp counts the worker threads of every thread that has
// run a parallel region, and once that count exceeds the CPUs it cuts its spin-waiting from ~300000
// to 1000 iterations for the whole process, which changes timings a lot (on a busy machine several
// fold). A Node process training one model runs all libtorch work on that model's executor thread,
// and Python on its main thread: one master each. So here everything, model construction included,
// runs on one thread: the main thread by default, the executor thread with --executor.
//
// Driven by bench/overhead.js over stdin/stdout (one command a line, one JSON line back) so that its
// runs interleave with the Node and Python ones. Commands:
//   info                 parameter counts and names/shapes of the training network
//   tiny direct|raw N    N tiny forwards on the owning thread (main, or the executor with --executor)
//   tiny executor N      N tiny forwards, each posted from the main thread and waited for (--executor only)
//                        tiny replies: per-call wall times in microseconds, and the process CPU time per call
//   train N              N training steps; per-step wall and CPU (all threads) times in milliseconds, losses
//   checks N             N rounds of the input checks on a training batch; times in milliseconds
//   quit
// Usage: bench_overhead [--threads N] [--executor]   (default threads: all hardware threads)
#include <ATen/Parallel.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/errors.h"
#include "base/executor.h"
#include "core/segmenter.h"

namespace {

using Clock = std::chrono::steady_clock;

double Micros(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

// CPU time of the whole process (every thread), in milliseconds.
double CpuMs() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
}

std::string JsonArray(const std::vector<double>& v) {
  std::ostringstream s;
  s.precision(9);
  s << '[';
  for (size_t i = 0; i < v.size(); ++i) s << (i ? "," : "") << v[i];
  s << ']';
  return s.str();
}

std::string JsonNumber(double v) {
  std::ostringstream s;
  s.precision(9);
  s << v;
  return s.str();
}

std::string JsonString(const std::string& v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out + "\"";
}

segtorch::ModelConfig Config(int64_t num_classes) {
  segtorch::ModelConfig c;
  c.arch = "fcn";
  c.backbone = "resnet18";
  c.num_classes = num_classes;
  c.in_channels = 3;
  c.output_stride = 32;
  c.aux = false;
  c.json = "{}";
  return c;
}

// The models and data; built on, and used only from, the owning thread.
struct Bench {
  Bench() {
    torch::manual_seed(0);
    // The tiny forward: the smallest configuration that runs the whole Segmenter::Forward path.
    // 32x32 is the network's input multiple at output stride 32, so no padding is added. Batch 2,
    // not 1: libtorch 1.13 runs 3x3 convolutions of a single small image (< 20480 input values)
    // through its im2col + BLAS fallback instead of oneDNN, which with Debian's reference BLAS is
    // ~5x slower (and noisier) than the batch of two; the point here is the per-call overhead.
    tiny = std::make_unique<segtorch::Segmenter>(Config(2));
    tiny_x = torch::randn({2, 3, 32, 32});
    // The training step.
    model = std::make_unique<segtorch::Segmenter>(Config(21));
    images = torch::randn({4, 3, 256, 256});
    masks = torch::randint(0, 21, {4, 256, 256}, torch::TensorOptions().dtype(torch::kByte));
    step_options.ignore_index = 255;
    step_options.optimizer.type = "sgd";
    step_options.optimizer.lr = 0.01;
    step_options.optimizer.momentum = 0.9;
  }

  void TinyForward() { segtorch::SegOutput out = tiny->Forward(tiny_x); }

  std::unique_ptr<segtorch::Segmenter> tiny, model;
  torch::Tensor tiny_x, images, masks;
  segtorch::TrainStepOptions step_options;
};

std::string TinyReply(const std::vector<double>& us, double cpu_ms) {
  return "{\"us\":" + JsonArray(us) + ",\"cpuUs\":" + JsonNumber(cpu_ms * 1e3 / std::max<size_t>(1, us.size())) + "}";
}

// A command that runs on the owning thread.
std::string Handle(Bench& b, const std::string& cmd, std::istringstream& in) {
  if (cmd == "info") {
    std::ostringstream names;
    names << '[';
    bool first = true;
    for (const auto& p : b.model->net().named_parameters()) {
      std::ostringstream shape;
      shape << p.value().sizes();
      names << (first ? "" : ",") << JsonString(p.key() + ":" + shape.str());
      first = false;
    }
    names << ']';
    return "{\"parameters\":" + std::to_string(b.model->NumParameters(false)) +
           ",\"tinyParameters\":" + std::to_string(b.tiny->NumParameters(false)) + ",\"names\":" + names.str() + "}";
  }
  if (cmd == "tiny") {
    std::string mode;
    int n = 0;
    in >> mode >> n;
    std::vector<double> t;
    t.reserve(n);
    double c0 = CpuMs();
    if (mode == "direct") {
      for (int i = 0; i < n; ++i) {
        auto a = Clock::now();
        b.TinyForward();
        t.push_back(Micros(a, Clock::now()));
      }
    } else if (mode == "raw") {
      for (int i = 0; i < n; ++i) {
        auto a = Clock::now();
        {
          torch::NoGradGuard no_grad;
          torch::Tensor out = b.tiny->net().forward(b.tiny_x).out.contiguous();
        }
        t.push_back(Micros(a, Clock::now()));
      }
    } else {
      throw std::runtime_error("unknown tiny mode '" + mode + "' (tiny executor needs --executor)");
    }
    return TinyReply(t, CpuMs() - c0);
  }
  if (cmd == "train") {
    int n = 0;
    in >> n;
    std::vector<double> t, cpu, loss;
    for (int i = 0; i < n; ++i) {
      double c0 = CpuMs();
      auto a = Clock::now();
      segtorch::StepResult r = b.model->TrainStep(b.images, b.masks, b.step_options);
      auto z = Clock::now();
      t.push_back(Micros(a, z) / 1000.0);
      cpu.push_back(CpuMs() - c0);
      loss.push_back(r.loss);
    }
    return "{\"ms\":" + JsonArray(t) + ",\"cpuMs\":" + JsonArray(cpu) + ",\"loss\":" + JsonArray(loss) + "}";
  }
  if (cmd == "checks") {
    // What Segmenter::PrepareImages / PrepareMasks do on every step beyond the conversions.
    int n = 0;
    in >> n;
    std::vector<double> finite, labels;
    for (int i = 0; i < n; ++i) {
      torch::Tensor m = b.masks.to(torch::kLong);  // needed anyway: not part of the check's cost
      auto a = Clock::now();
      bool ok = torch::isfinite(b.images).all().item<bool>();
      auto z = Clock::now();
      torch::Tensor bad = ((m < 0) | (m >= 21)) & (m != 255);
      bool any = bad.any().item<bool>();
      auto c = Clock::now();
      if (!ok || any) throw std::runtime_error("unexpected check result");
      finite.push_back(Micros(a, z) / 1000.0);
      labels.push_back(Micros(z, c) / 1000.0);
    }
    return "{\"finiteMs\":" + JsonArray(finite) + ",\"labelsMs\":" + JsonArray(labels) + "}";
  }
  throw std::runtime_error("unknown command '" + cmd + "'");
}

// Runs `f` on the executor and waits; exceptions come back to this thread.
template <typename F>
auto OnExecutor(segtorch::Executor& ex, F&& f) -> decltype(f()) {
  std::packaged_task<decltype(f())()> task(std::forward<F>(f));
  auto fut = task.get_future();
  ex.Post([&task] { task(); });
  return fut.get();
}

void Reply(const std::string& json) {
  std::cout << json << std::endl;  // endl flushes: the driver waits for the line
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  bool use_executor = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    if (a == "--executor") use_executor = true;
  }
  if (threads < 1) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  segtorch::SetDesiredThreads(threads);  // applied by executor threads, as in the addon

  std::unique_ptr<segtorch::Executor> executor;
  std::unique_ptr<Bench> bench;
  try {
    if (use_executor) {
      executor = std::make_unique<segtorch::Executor>();
      bench = OnExecutor(*executor, [] { return std::make_unique<Bench>(); });
    } else {
      at::set_num_threads(threads);
      bench = std::make_unique<Bench>();
    }
  } catch (const std::exception& e) {
    Reply("{\"error\":" + JsonString(segtorch::CleanMessage(e)) + "}");
    return 1;
  }
  int reported_threads = use_executor ? OnExecutor(*executor, [] { return at::get_num_threads(); }) : at::get_num_threads();
  Reply("{\"ready\":true,\"threads\":" + std::to_string(reported_threads) + ",\"executor\":" +
        (use_executor ? "true" : "false") + ",\"libtorch\":" + JsonString(TORCH_VERSION) + "}");

  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    if (cmd.empty()) continue;
    if (cmd == "quit") break;
    try {
      if (use_executor && cmd == "tiny" && line.find("executor") != std::string::npos) {
        std::string mode;
        int n = 0;
        in >> mode >> n;
        Bench& b = *bench;
        std::vector<double> t;
        t.reserve(n);
        double c0 = CpuMs();
        for (int i = 0; i < n; ++i) {
          auto a = Clock::now();
          std::promise<void> done;
          auto fut = done.get_future();
          executor->Post([&] {
            b.TinyForward();
            done.set_value();
          });
          fut.wait();
          t.push_back(Micros(a, Clock::now()));
        }
        Reply(TinyReply(t, CpuMs() - c0));
      } else if (use_executor) {
        Reply(OnExecutor(*executor, [&] { return Handle(*bench, cmd, in); }));
      } else {
        Reply(Handle(*bench, cmd, in));
      }
    } catch (const std::exception& e) {
      Reply("{\"error\":" + JsonString(segtorch::CleanMessage(e)) + "}");
    }
  }
  if (executor) OnExecutor(*executor, [&] { bench.reset(); });  // free on the owning thread
  return 0;
}
