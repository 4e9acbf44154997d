# MPI pipeline tests (worker/). Included from tests/CMakeLists.txt when the
# lsw target exists (find_package(MPI) + add_subdirectory(worker) at the top
# level). Each test launches mpirun itself; ranks are oversubscribed on
# small machines. Under LS_SANITIZE, LeakSanitizer reports OpenMPI's own
# allocations at exit from plugins already unloaded (frames "<unknown
# module>", so no suppression file can name them): the tests that run
# mpirun set detect_leaks=0; AddressSanitizer and UBSan stay on.
# test_mpi_msg (no MPI_Init) keeps leak detection.
if(NOT TARGET lsw)
  return()
endif()
set(LSW_MPIEXEC ${LS_MPIRUN}) # found by cmake/LsTools.cmake
set(LSW_MPI_FLAGS --allow-run-as-root --oversubscribe --bind-to none)

add_executable(mpi_pipeline_check ${CMAKE_CURRENT_LIST_DIR}/pipeline_check.c)
target_link_libraries(mpi_pipeline_check PRIVATE lsw test_support)
add_executable(test_mpi_msg ${CMAKE_CURRENT_LIST_DIR}/test_mpi_msg.c)
target_link_libraries(test_mpi_msg PRIVATE lsw test_support)

set(LSW_TEST_ENV ${LS_TEST_ENV}
  "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1")
set(PC $<TARGET_FILE:mpi_pipeline_check>)
set(WK $<TARGET_FILE:layerskip-worker>)
set(LSW_TRACE_PREFIX ${CMAKE_CURRENT_BINARY_DIR}/tmp/mpi_trace)

# layout parsing and message decoding: no mpirun needed
add_test(NAME test_mpi_msg COMMAND test_mpi_msg)
# greedy output equals single-process ls_generate's: 2 ranks, E=8 and E=4
add_test(NAME mpi_pipeline_2ranks_e8 COMMAND ${LSW_MPIEXEC} ${LSW_MPI_FLAGS} -np 2 ${PC} --split 0-8,8-30)
add_test(NAME mpi_pipeline_2ranks_e4 COMMAND ${LSW_MPIEXEC} ${LSW_MPI_FLAGS} -np 2 ${PC} --split 0-4,4-30)
# 3 ranks through the real worker binary: E=8 [8,20) [20,30); E=4 [4,10) [10,30)
add_test(NAME mpi_pipeline_3ranks_e8 COMMAND ${LSW_MPIEXEC} ${LSW_MPI_FLAGS} -np 1 ${PC}
  --split 0-8,8-20,20-30 : -np 2 ${WK})
add_test(NAME mpi_pipeline_3ranks_e4 COMMAND ${LSW_MPIEXEC} ${LSW_MPI_FLAGS} -np 1 ${PC}
  --split 0-4,4-10,10-30 : -np 2 ${WK})
# 16 requests in flight on their own slots (threads on rank 0), mixed strategies; the stages batch them
add_test(NAME mpi_concurrent_2ranks COMMAND ${LSW_MPIEXEC} ${LSW_MPI_FLAGS} -np 2 ${PC} --concurrent 16)
add_test(NAME mpi_concurrent_3ranks COMMAND ${LSW_MPIEXEC} ${LSW_MPI_FLAGS} -np 1 ${PC} --concurrent 16
  : -np 2 ${WK})
# sampled self-speculation with adapter and lookup drafts follows the full
# model's distribution (chi-square; a random 16-token model): 2 ranks, and 3
# through the real worker binary (the middle stage relays the draft distributions)
add_test(NAME mpi_sampling_2ranks COMMAND ${LSW_MPIEXEC} ${LSW_MPI_FLAGS} -np 2 ${PC} --sampling)
add_test(NAME mpi_sampling_3ranks COMMAND ${LSW_MPIEXEC} ${LSW_MPI_FLAGS} -np 1 ${PC} --sampling : -np 2 ${WK})
add_test(NAME mpi_layouts COMMAND ${LSW_MPIEXEC} ${LSW_MPI_FLAGS} -np 3 ${PC} --layouts)
add_test(NAME mpi_trace_overlap COMMAND ${LSW_MPIEXEC} ${LSW_MPI_FLAGS} -np 2 ${PC} --trace ${LSW_TRACE_PREFIX})
add_test(NAME mpi_stopped_stage COMMAND ${LSW_MPIEXEC} ${LSW_MPI_FLAGS} -np 2 ${PC} --hang)
add_test(NAME mpi_worker_stages_mismatch COMMAND ${LSW_MPIEXEC} ${LSW_MPI_FLAGS} -np 1 ${PC}
  --expect-setup-error "was started with --stages \"0-4,4-30\" but rank 0 uses \"0-8,8-30\""
  : -np 1 ${WK} --stages 0-4,4-30)
add_test(NAME mpi_worker_model_mismatch COMMAND ${LSW_MPIEXEC} ${LSW_MPI_FLAGS} -np 1 ${PC}
  --expect-setup-error "is not the file rank 0 loaded"
  : -np 1 ${WK} --model ${CMAKE_CURRENT_LIST_DIR}/../../models/vocab/ggml-vocab-llama-bpe.gguf)
set_tests_properties(test_mpi_msg PROPERTIES ENVIRONMENT "${LS_TEST_ENV}" TIMEOUT 60)
set_tests_properties(mpi_pipeline_2ranks_e8 mpi_pipeline_2ranks_e4 mpi_pipeline_3ranks_e8 mpi_pipeline_3ranks_e4
  mpi_concurrent_2ranks mpi_concurrent_3ranks mpi_sampling_2ranks mpi_sampling_3ranks mpi_layouts mpi_trace_overlap mpi_stopped_stage
  mpi_worker_stages_mismatch mpi_worker_model_mismatch
  PROPERTIES ENVIRONMENT "${LSW_TEST_ENV}" TIMEOUT 300 RUN_SERIAL TRUE)
