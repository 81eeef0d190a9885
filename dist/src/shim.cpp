// A small C API over PyTorch's own c10d (TCPStore, PrefixStore, ProcessGroupGloo) for nas-dist.
//
// Every entry point returns 0 on success and 1 on failure; on failure it writes a NUL-terminated
// message (truncated to fit) into the caller's buffer `err` of `err_len` bytes. No C++ exception
// ever crosses into Rust: each entry point catches c10::Error, std::exception and anything else.
//
// Tensors arrive as `at::Tensor*` (tch's `C_tensor`). Collectives work in place on the tensors'
// storage: the `at::Tensor` copies handed to c10d share it.

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
  std::chrono::milliseconds timeout;
};

void write_error(char* err, size_t err_len, const std::string& message) {
  if (err == nullptr || err_len == 0) {
    return;
  }
  size_t n = std::min(message.size(), err_len - 1);
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

// Runs `body`, turning any C++ exception into an error message; returns 0 or 1.
template <typename F>
int guarded(char* err, size_t err_len, F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    write_error(err, err_len, e.what_without_backtrace());
  } catch (const std::exception& e) {
    write_error(err, err_len, e.what());
  } catch (...) {
    write_error(err, err_len, "unknown C++ exception (not derived from std::exception)");
  }
  return 1;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, ',')) {
    if (!part.empty()) {
      parts.push_back(part);
    }
  }
  return parts;
}

// Checks the handle and the tensor list, and copies the tensor handles (sharing storage).
std::vector<at::Tensor> collect(const Group* group, at::Tensor* const* tensors, size_t count) {
  TORCH_CHECK(group != nullptr, "nas-dist: null process group handle");
  TORCH_CHECK(count == 0 || tensors != nullptr, "nas-dist: null tensor list");
  std::vector<at::Tensor> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    TORCH_CHECK(tensors[i] != nullptr, "nas-dist: tensor ", i, " is a null pointer");
    const at::Tensor& t = *tensors[i];
    TORCH_CHECK(t.defined(), "nas-dist: tensor ", i, " is undefined");
    TORCH_CHECK(t.is_contiguous(), "nas-dist: tensor ", i, " is not contiguous");
    out.push_back(t);
  }
  return out;
}

// Waits for every work item with the group's timeout, in the order they were issued. A
// collective's own error (e.g. a peer's closed connection) is rethrown as it is; c10d's bare
// "Operation timed out!" is rethrown saying how long was waited and what that means.
void wait_all(const Group* group, std::vector<c10::intrusive_ptr<c10d::Work>>& works) {
  for (auto& work : works) {
    try {
      work->wait(group->timeout);
    } catch (const c10::Error& e) {
      if (work->isCompleted()) {
        throw;
      }
      TORCH_CHECK(false, "timed out after ", group->timeout.count(),
                  " ms waiting for the other ranks to join this collective (c10d: ",
                  e.what_without_backtrace(), ")");
    }
  }
}

}  // namespace

extern "C" {

// Joins a Gloo process group.
//   host, port:   the TCPStore's address (MASTER_ADDR, MASTER_PORT)
//   is_server:    1 when this process hosts the TCPStore (rank 0 without torchrun's agent store)
//   prefix:       key prefix inside the store (one per group, the same on every rank)
//   device_kind:  0 = gloo's default device (this machine's hostname, else loopback),
//                 1 = the address `device_arg` resolves to,
//                 2 = the network interfaces named in `device_arg`, comma-separated
int nas_c10d_group_new(const char* host, uint16_t port, int is_server, int rank, int world_size,
                       int64_t timeout_ms, const char* prefix, int device_kind,
                       const char* device_arg, void** out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    TORCH_CHECK(host != nullptr && prefix != nullptr && out != nullptr,
                "nas-dist: null argument to nas_c10d_group_new");
    TORCH_CHECK(world_size > 0 && rank >= 0 && rank < world_size, "nas-dist: rank ", rank,
                " is outside a world of size ", world_size);
    TORCH_CHECK(timeout_ms > 0, "nas-dist: timeout must be positive, got ", timeout_ms, " ms");
    *out = nullptr;
    const std::chrono::milliseconds timeout(timeout_ms);

    c10d::TCPStoreOptions store_options;
    store_options.port = port;
    store_options.isServer = is_server != 0;
    store_options.numWorkers = static_cast<std::size_t>(world_size);
    store_options.waitWorkers = true;
    store_options.timeout = timeout;
    store_options.multiTenant = true;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), store_options);
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);

    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    switch (device_kind) {
      case 0:
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        break;
      case 1:
        TORCH_CHECK(device_arg != nullptr, "nas-dist: device hostname missing");
        options->devices.push_back(
            c10d::ProcessGroupGloo::createDeviceForHostname(std::string(device_arg)));
        break;
      case 2: {
        TORCH_CHECK(device_arg != nullptr, "nas-dist: device interfaces missing");
        auto names = split_commas(device_arg);
        TORCH_CHECK(!names.empty(), "nas-dist: no network interface named in '", device_arg, "'");
        for (const auto& name : names) {
          options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
        }
        break;
      }
      default:
        TORCH_CHECK(false, "nas-dist: unknown device kind ", device_kind);
    }

    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
    *out = new Group{store, gloo, timeout};
  });
}

// Sums each tensor over the ranks, in place (one collective per tensor, all issued before the
// first wait).
int nas_c10d_all_reduce_sum(void* handle, at::Tensor* const* tensors, size_t count, char* err,
                            size_t err_len) {
  return guarded(err, err_len, [&] {
    auto* group = static_cast<Group*>(handle);
    auto list = collect(group, tensors, count);
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(list.size());
    for (auto& tensor : list) {
      std::vector<at::Tensor> one{tensor};
      c10d::AllreduceOptions options;
      options.reduceOp = c10d::ReduceOp::SUM;
      options.timeout = group->timeout;
      works.push_back(group->gloo->allreduce(one, options));
    }
    wait_all(group, works);
  });
}

// Overwrites each tensor with rank `root`'s, in place.
int nas_c10d_broadcast(void* handle, at::Tensor* const* tensors, size_t count, int root,
                       char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto* group = static_cast<Group*>(handle);
    auto list = collect(group, tensors, count);
    TORCH_CHECK(root >= 0 && root < group->gloo->getSize(), "nas-dist: broadcast root ", root,
                " is outside a world of size ", group->gloo->getSize());
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(list.size());
    for (auto& tensor : list) {
      std::vector<at::Tensor> one{tensor};
      c10d::BroadcastOptions options;
      options.rootRank = root;
      options.rootTensor = 0;
      options.timeout = group->timeout;
      works.push_back(group->gloo->broadcast(one, options));
    }
    wait_all(group, works);
  });
}

// Returns once every rank has entered the barrier (and all earlier collectives are done).
int nas_c10d_barrier(void* handle, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto* group = static_cast<Group*>(handle);
    TORCH_CHECK(group != nullptr, "nas-dist: null process group handle");
    c10d::BarrierOptions options;
    options.timeout = group->timeout;
    std::vector<c10::intrusive_ptr<c10d::Work>> works{group->gloo->barrier(options)};
    wait_all(group, works);
  });
}

// Leaves the group and frees the handle (null is ignored).
int nas_c10d_group_free(void* handle, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { delete static_cast<Group*>(handle); });
}

}  // extern "C"
