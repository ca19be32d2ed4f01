# Tensor, sequence and context parallelism (policies/tensor_parallel.h): per-layer activation
# bytes against Korthikanti et al. 2022's formulas on the GPT exports shaped like the paper's
# models (tests/data/korthikanti, made by validation/export_korthikanti.py), model states per
# rank against the closed forms, the tiny LLaMA and its LoRA (tests/data/llama_tp), and the
# refusals.
add_executable(tensor_parallel_test ${CMAKE_CURRENT_SOURCE_DIR}/tensor_parallel_test.cc)
target_link_libraries(tensor_parallel_test PRIVATE vramsim_engine GTest::gtest_main)
target_compile_definitions(tensor_parallel_test PRIVATE
  VRAMSIM_EXAMPLES="${CMAKE_SOURCE_DIR}/examples"
  VRAMSIM_KORTHIKANTI="${CMAKE_CURRENT_SOURCE_DIR}/data/korthikanti"
  VRAMSIM_LLAMA_TP="${CMAKE_CURRENT_SOURCE_DIR}/data/llama_tp")
gtest_discover_tests(tensor_parallel_test TEST_PREFIX "tensor_parallel." DISCOVERY_TIMEOUT 60)
