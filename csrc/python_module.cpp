// The Python module convkit._C: importing it registers the op library (the
// TORCH_LIBRARY blocks of the other files), and it carries one entry point
// of its own, for calls so small that the way in costs more than the work.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/extension.h>

namespace convkit {
namespace {

// convkit::corr2d called from C++: unboxed, through the dispatcher. When no
// autograd graph is recorded, the call goes below the op's autograd layer
// (a Python kernel that would only pass it on, at several times the cost of a
// 28 x 28 correlation). Device kernels, dispatch modes, the profiler and
// functorch transforms see the call as they would any other.
at::Tensor corr2d(const at::Tensor& x, const at::Tensor& k) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("convkit::corr2d", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&)>();
  const bool records_graph = at::GradMode::is_enabled() && (x.requires_grad() || k.requires_grad());
  const bool transformed = c10::impl::tls_is_dispatch_key_included(c10::DispatchKey::FuncTorchDynamicLayerFrontMode);
  if (records_graph || transformed) return op.call(x, k);
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(x, k);
}

}  // namespace
}  // namespace convkit

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "convkit's compiled operators (torch.ops.convkit) and a direct entry for small corr2d calls";
  m.def("corr2d", &convkit::corr2d, "convkit::corr2d through the dispatcher, below autograd when no graph is recorded");
}
