# Fuzz targets (tests/fuzz/README.md); included from tests/CMakeLists.txt.
#
# With -DNATSHTTP_FUZZ=ON (clang; the whole build then carries ASan, UBSan and
# libFuzzer's coverage instrumentation) each target links libFuzzer and the
# CTest test fuzz_<name> runs it for NATSHTTP_FUZZ_SECONDS on a copy of
# tests/fuzz/corpus/<name>. In every other build the same entry points link
# the small replay driver instead, and fuzz_replay_<name> runs each committed
# corpus file once: the corpus (found crashes included) is a regression test.
set(NATSHTTP_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
set(NATSHTTP_FUZZ_TARGETS subject head client)
set(NATSHTTP_FUZZ_SECONDS 60 CACHE STRING "Seconds each fuzz_<name> CTest test fuzzes")

foreach(t ${NATSHTTP_FUZZ_TARGETS})
  set(srcs ${NATSHTTP_FUZZ_DIR}/fuzz_${t}.c ${NATSHTTP_FUZZ_DIR}/fuzz_msg.c)
  if(NOT NATSHTTP_FUZZ)
    list(APPEND srcs ${NATSHTTP_FUZZ_DIR}/replay_main.c)
  endif()
  add_executable(fuzz_${t} ${srcs})
  target_include_directories(fuzz_${t} PRIVATE ${CMAKE_SOURCE_DIR}/src/lib ${NATSHTTP_FUZZ_DIR})
  target_link_libraries(fuzz_${t} PRIVATE natshttp)
  if(NATSHTTP_FUZZ)
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer)
    add_test(NAME fuzz_${t}
             COMMAND bash ${NATSHTTP_FUZZ_DIR}/run_fuzzer.sh $<TARGET_FILE:fuzz_${t}>
                     ${NATSHTTP_FUZZ_DIR}/corpus/${t} ${NATSHTTP_FUZZ_SECONDS}
                     ${CMAKE_BINARY_DIR}/fuzz-artifacts/${t} ${NATSHTTP_FUZZ_DIR}/natshttp.dict)
    math(EXPR fuzz_timeout "${NATSHTTP_FUZZ_SECONDS} + 120")
    set_tests_properties(fuzz_${t} PROPERTIES TIMEOUT ${fuzz_timeout} LABELS fuzz)
  else()
    add_test(NAME fuzz_replay_${t} COMMAND fuzz_${t} ${NATSHTTP_FUZZ_DIR}/corpus/${t})
    set_tests_properties(fuzz_replay_${t} PROPERTIES TIMEOUT 120 LABELS fuzz
                         ENVIRONMENT "NATSHTTP_FUZZ_LOG=3;LSAN_OPTIONS=suppressions=${NATSHTTP_FUZZ_DIR}/lsan.supp"
                         ENVIRONMENT_MODIFICATION "ASAN_OPTIONS=string_append::fast_unwind_on_malloc=0")
  endif()
endforeach()
