// Reductions split across the blocks of one launch, finished by the block that arrives last:
// each block writes its partial result, counts itself in the output's counter, and the block
// that completes the count adds every part, in the parts' order, whichever order they finished
// in. No second launch, and the same result on every run. For reductions whose parts are short:
// bias.cu's channel sums (a few floats a channel). A split-k product's parts are not: the last
// block of a 128 x 128 tile would read all its parts alone, one block's bandwidth against a whole
// grid's, so gemm.cu keeps its reduction launch. Under the CPU emulation, cuda_shim.h supplies
// atomicAdd, __threadfence and __ldcg.
#pragma once

// Counts the calling block as one of `parts` arrivals at `counter` (every thread of the block
// calls it, after writing its part) and says, in every thread, whether it was the last. The last
// block resets the counter to 0 for the next launch that uses it (launches on one stream run in
// order; counters start at 0, zeroed when the backend is created).
__device__ __forceinline__ bool last_to_arrive(int* counter, int parts)
{
    __shared__ int last;
    // Release: this thread's stores of its part reach device scope before the count does.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        last = atomicAdd(counter, 1) == parts - 1;
        if (last) {
            *counter = 0;
            // Acquire: the other blocks' parts, fenced before their counts, are visible to the
            // reads that follow the barrier (which use __ldcg, past this SM's L1).
            __threadfence();
        }
    }
    __syncthreads();
    const bool result = last != 0;
    // Every thread has read `last` before a later call of this block overwrites it.
    __syncthreads();
    return result;
}
