"""Numba intrinsics that tell LLVM the propagator tables and jump matrices are never written where the level
state is.

Why: LLVM vectorises a loop only if it can rule out that a store hits memory a later iteration loads. The
lockstep pass (:func:`firstspike.sim_device.engine._deliver_all`) loads table coefficients at per-neuron
(data-dependent) rows and stores the state; without aliasing information it must assume they may overlap, cannot
check that at run time for data-dependent indices, and stays scalar. numba has no ``restrict``; these intrinsics attach
LLVM scoped-noalias metadata instead: table loads carry ``!alias.scope !{tables}``, state loads and
stores carry ``!noalias !{tables}``. The caller must guarantee what that promises (the table array and the
state array are different allocations). The loads also skip numba's negative-index wraparound, which would
otherwise turn a contiguous row read into a gather. Without numba the functions are plain Python equivalents.
"""

from __future__ import annotations

try:
    from llvmlite import ir
    from numba import config, types
    from numba.core import cgutils
    from numba.extending import intrinsic

    # with NUMBA_DISABLE_JIT the kernels run as Python, which cannot call intrinsics
    HAVE_NUMBA = not config.DISABLE_JIT  # type: ignore[attr-defined]  # set from the environment at import
except ImportError:  # pragma: no cover - exercised only where numba is missing
    HAVE_NUMBA = False


if HAVE_NUMBA:

    def _tables_scope(module: ir.Module) -> ir.MDValue:
        domain = module.add_metadata([ir.MetaDataString(module, "firstspike.sim.domain")])
        scope = module.add_metadata([ir.MetaDataString(module, "firstspike.sim.tables"), domain])
        return module.add_metadata([scope])

    @intrinsic
    def load_table(typingctx, table, row, col):  # pragma: no cover - compiled
        """``int64(table[row, col])`` of a C-contiguous 2D int8, int32 or int64 array (no wraparound, no bounds
        check), tagged as a table load."""
        if not (isinstance(table, types.Array) and table.ndim == 2 and table.layout == "C"
                and table.dtype in (types.int8, types.int32, types.int64)):
            return None
        sig = types.int64(table, row, col)

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            r = context.cast(builder, args[1], signature.args[1], types.intp)
            c = context.cast(builder, args[2], signature.args[2], types.intp)
            ncol = cgutils.unpack_tuple(builder, ary.shape, 2)[1]
            ptr = builder.gep(ary.data, [builder.add(builder.mul(r, ncol), c)], inbounds=True)
            val = builder.load(ptr)
            val.set_metadata("alias.scope", _tables_scope(builder.module))
            return builder.sext(val, ir.IntType(64)) if val.type.width < 64 else val

        return sig, codegen

    @intrinsic
    def load_state(typingctx, state, idx):  # pragma: no cover - compiled
        """``state[idx]`` of a C-contiguous 1D int64 array, tagged as not aliasing any table load."""
        if not (isinstance(state, types.Array) and state.ndim == 1 and state.dtype == types.int64):
            return None
        sig = types.int64(state, idx)

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            i = context.cast(builder, args[1], signature.args[1], types.intp)
            val = builder.load(builder.gep(ary.data, [i], inbounds=True))
            val.set_metadata("noalias", _tables_scope(builder.module))
            return val

        return sig, codegen

    @intrinsic
    def store_state(typingctx, state, idx, value):  # pragma: no cover - compiled
        """``state[idx] = value`` for a C-contiguous 1D int64 (state) or uint8 (flag) array, the value converted
        to the array's type, tagged as not aliasing any table load."""
        if not (isinstance(state, types.Array) and state.ndim == 1 and state.dtype in (types.int64, types.uint8)):
            return None
        sig = types.void(state, idx, value)

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            i = context.cast(builder, args[1], signature.args[1], types.intp)
            v = context.cast(builder, args[2], signature.args[2], signature.args[0].dtype)
            st = builder.store(v, builder.gep(ary.data, [i], inbounds=True))
            st.set_metadata("noalias", _tables_scope(builder.module))
            return context.get_dummy_value()

        return sig, codegen

    @intrinsic
    def trailing_zeros(typingctx, word):  # pragma: no cover - compiled
        """The number of trailing zero bits of a non-zero uint64 (one ``tzcnt``), as int64."""
        if word != types.uint64:
            return None
        sig = types.int64(word)

        def codegen(context, builder, signature, args):
            return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))  # 1: the word is never zero

        return sig, codegen

else:  # pragma: no cover

    def trailing_zeros(word):  # type: ignore[no-redef,misc]
        w = int(word)
        return (w & -w).bit_length() - 1

    def load_table(table, row, col):  # type: ignore[no-redef,misc]
        return int(table[int(row), int(col)])

    def load_state(state, idx):  # type: ignore[no-redef,misc]
        return int(state[int(idx)])

    def store_state(state, idx, value):  # type: ignore[no-redef,misc]
        state[int(idx)] = value
