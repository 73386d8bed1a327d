"""fp16 ONNX graphs for strongly typed TensorRT (and ONNX Runtime CUDA): precision lives in the graph.

`convert_to_fp16` turns every float32 tensor of an fp32 graph into float16, except:
- graph inputs and outputs stay float32 (a Cast at the boundary), so callers and caches keep one dtype;
- normalization nodes (GroupNormalization, LayerNormalization, InstanceNormalization) run in float32,
  Cast in and out, so their statistics cannot overflow (squares above 65504 are inf in fp16);
- Resize's `scales` input, which ONNX defines as float32 only.
Shape arithmetic is int64 in these graphs and is left alone.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Precision = Literal["fp32", "fp16"]
FP32_OPS = frozenset({"GroupNormalization", "LayerNormalization", "InstanceNormalization"})
FLOAT_ONLY_INPUTS = {"Resize": (2,)}  # input positions ONNX types as tensor(float)
_UNSUPPORTED_OPS = frozenset({"If", "Loop", "Scan"})


def _fp16_tensor(tensor: TensorProto) -> TensorProto:
    return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name)


def _convert_constants(graph: onnx.GraphProto) -> None:
    for index, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT:
            graph.initializer[index].CopyFrom(_fp16_tensor(init))
    for node in graph.node:
        if node.op_type in _UNSUPPORTED_OPS:
            raise ValueError(f"fp16 conversion does not handle {node.op_type} subgraphs")
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(_fp16_tensor(attr.t))
            elif node.op_type == "Constant" and attr.name in ("value_float", "value_floats"):
                raise ValueError("Constant value_float(s) attributes are not converted")
            elif node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16


def _cast(source: str, target: str, to: int) -> onnx.NodeProto:
    return helper.make_node("Cast", [source], [target], to=to, name=f"{target}/Cast")


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """An fp16 copy of an fp32 model with fp32 I/O and fp32 normalization (see the module docstring)."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    _convert_constants(graph)
    inputs = {i.name for i in graph.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}
    outputs = {o.name for o in graph.output if o.type.tensor_type.elem_type == TensorProto.FLOAT}
    renamed = {name: f"{name}.fp16" for name in inputs | outputs}
    nodes = [_cast(name, renamed[name], TensorProto.FLOAT16) for name in sorted(inputs)]
    for node in graph.node:
        for position, name in enumerate(node.input):
            node.input[position] = renamed.get(name, name)
        for position, name in enumerate(node.output):
            node.output[position] = renamed.get(name, name)
        keep = FLOAT_ONLY_INPUTS.get(node.op_type, range(len(node.input)) if node.op_type in FP32_OPS else ())
        for position in keep:
            name = node.input[position]
            if name:  # these inputs are float32 by the op's definition
                node.input[position] = f"{name}.fp32.{node.name or node.output[0]}"
                nodes.append(_cast(name, node.input[position], TensorProto.FLOAT))
        after = []
        if node.op_type in FP32_OPS:
            for position, name in enumerate(node.output):
                if name:
                    node.output[position] = f"{name}.fp32"
                    after.append(_cast(node.output[position], name, TensorProto.FLOAT16))
        nodes += [node, *after]
    nodes += [_cast(renamed[name], name, TensorProto.FLOAT) for name in sorted(outputs)]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    result.doc_string = (model.doc_string + " [fp16, fp32 I/O and normalization]").strip()
    onnx.checker.check_model(result)
    return onnx.shape_inference.infer_shapes(result, strict_mode=True)
