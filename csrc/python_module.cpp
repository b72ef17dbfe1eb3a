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
// Whether a functorch transform (vmap, grad, ...) is active: calls then take
// the op's full dispatch, which the transforms see.
bool under_functorch() {
  return c10::impl::tls_is_dispatch_key_included(c10::DispatchKey::FuncTorchDynamicLayerFrontMode);
}

template <typename Return, typename... Params, typename... Args>
Return call_op(const c10::TypedOperatorHandle<Return(Params...)>& op, bool inputs_require_grad, const Args&... args) {
  const bool records_graph = at::GradMode::is_enabled() && inputs_require_grad;
  if (records_graph || under_functorch()) return op.call(args...);
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(args...);
}

at::Tensor corr2d(const at::Tensor& x, const at::Tensor& k) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("convkit::corr2d", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&)>();
  return call_op(op, x.requires_grad() || k.requires_grad(), x, k);
}

const auto& conv2d_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("convkit::conv2d", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                               at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t)>();
  return op;
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

// conv2d's graph for eager calls, recorded in C++ as torch records
// nn.Conv2d's: the node saves input and weight, and its backward runs
// convkit::conv2d_backward for the gradients the graph needs (through the
// op's own autograd layer when that call is itself recorded: double
// backward). A Python autograd.Function in its place cost LeNet c2's
// forward + backward 0.3 ms of 2.3 right after torch's call (cold caches),
// where torch's module calls cost no more than its bare ops.
struct Conv2dNode : torch::autograd::Function<Conv2dNode> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, const std::vector<int64_t>& stride,
                            const std::vector<int64_t>& padding, const std::vector<int64_t>& dilation, int64_t groups) {
    ctx->save_for_backward({input, weight});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["dilation"] = dilation;
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    // Grad mode is off here: the op runs below its autograd layer.
    return call_op(conv2d_op(), false, input, weight, bias, at::IntArrayRef(stride), at::IntArrayRef(padding),
                   at::IntArrayRef(dilation), groups);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    // Edges follow the tensor inputs: input, weight, then bias where there is one.
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const std::array<bool, 3> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                   has_bias && ctx->needs_input_grad(2)};
    auto [grad_input, grad_weight, grad_bias] =
        conv2d_backward(grads[0], saved[0], saved[1], ctx->saved_data["stride"].toIntVector(),
                        ctx->saved_data["padding"].toIntVector(), ctx->saved_data["dilation"].toIntVector(),
                        ctx->saved_data["groups"].toInt(), mask);
    const at::Tensor none;
    return {mask[0] ? grad_input : none, mask[1] ? grad_weight : none, mask[2] ? grad_bias : none, none, none, none,
            none};
  }
};

// conv2d for eager calls: the C++ node where a graph is recorded, the op
// below its autograd layer where none is, the op's full dispatch under
// functorch transforms.
at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                  const std::vector<int64_t>& dilation, int64_t groups) {
  const bool require_grad = input.requires_grad() || weight.requires_grad() || (bias && bias->requires_grad());
  if (at::GradMode::is_enabled() && require_grad && !under_functorch())
    return Conv2dNode::apply(input, weight, bias, stride, padding, dilation, groups);
  return call_op(conv2d_op(), require_grad, input, weight, bias, at::IntArrayRef(stride), at::IntArrayRef(padding),
                 at::IntArrayRef(dilation), groups);
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
        "convkit::conv2d through the dispatcher: its graph recorded by a C++ node, below autograd when none is");
  m.def("conv2d_backward", &convkit::conv2d_backward, no_gil,
        "convkit::conv2d_backward through the dispatcher, below autograd when no graph is recorded");
}
