// The Python module convkit._C: importing it registers the op library (the
// TORCH_LIBRARY blocks of the other files), and it carries direct entries of
// its own, for calls so small that the way in costs more than the work.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/extension.h>

#include <array>
#include <optional>
#include <tuple>
#include <vector>

namespace convkit {
namespace {

// op(args...) called from C++: unboxed, through the dispatcher. When no
// autograd graph is recorded (grad mode off, or no input that requires
// grad), the call goes below the op's autograd layer: a Python kernel that
// would only pass it on, at several times the cost of a small layer. Device
// kernels, dispatch modes, the profiler and functorch transforms see the call
// as they would any other. (The boxed Python call, torch.ops.convkit.*,
// converts every argument through the schema first: 3-8 us more.)
template <typename Return, typename... Params, typename... Args>
Return call_op(const c10::TypedOperatorHandle<Return(Params...)>& op, bool inputs_require_grad, const Args&... args) {
  const bool records_graph = at::GradMode::is_enabled() && inputs_require_grad;
  const bool transformed = c10::impl::tls_is_dispatch_key_included(c10::DispatchKey::FuncTorchDynamicLayerFrontMode);
  if (records_graph || transformed) return op.call(args...);
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(args...);
}

at::Tensor corr2d(const at::Tensor& x, const at::Tensor& k) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("convkit::corr2d", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&)>();
  return call_op(op, x.requires_grad() || k.requires_grad(), x, k);
}

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                  const std::vector<int64_t>& dilation, int64_t groups) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("convkit::conv2d", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                               at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t)>();
  const bool require_grad = input.requires_grad() || weight.requires_grad() || (bias && bias->requires_grad());
  return call_op(op, require_grad, input, weight, bias, at::IntArrayRef(stride), at::IntArrayRef(padding),
                 at::IntArrayRef(dilation), groups);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight, const std::vector<int64_t>& stride,
    const std::vector<int64_t>& padding, const std::vector<int64_t>& dilation, int64_t groups,
    const std::array<bool, 3>& output_mask) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("convkit::conv2d_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                                at::IntArrayRef, at::IntArrayRef, at::IntArrayRef,
                                                                int64_t, std::array<bool, 3>)>();
  const bool require_grad = grad_output.requires_grad() || input.requires_grad() || weight.requires_grad();
  return call_op(op, require_grad, grad_output, input, weight, at::IntArrayRef(stride), at::IntArrayRef(padding),
                 at::IntArrayRef(dilation), groups, output_mask);
}

}  // namespace
}  // namespace convkit

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "convkit's compiled operators (torch.ops.convkit) and direct entries for small calls";
  // Like torch's own op calls, these run without the GIL (Python kernels and
  // dispatch modes reached through the dispatcher take it back themselves).
  const auto no_gil = pybind11::call_guard<pybind11::gil_scoped_release>();
  m.def("corr2d", &convkit::corr2d, no_gil,
        "convkit::corr2d through the dispatcher, below autograd when no graph is recorded");
  m.def("conv2d", &convkit::conv2d, no_gil,
        "convkit::conv2d through the dispatcher, below autograd when no graph is recorded");
  m.def("conv2d_backward", &convkit::conv2d_backward, no_gil,
        "convkit::conv2d_backward through the dispatcher, below autograd when no graph is recorded");
}
