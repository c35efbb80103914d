# End-to-end tests: Python unittest modules in this directory that start a real
# nats-server and the real nats-http binary on ephemeral ports.
#
# Include from tests/CMakeLists.txt (after the nats-http target exists):
#
#   include(${PROJECT_SOURCE_DIR}/tests/e2e/e2e.cmake)
#   natshttp_e2e(get_basic test_get_basic.py)
#   natshttp_e2e(big_download test_big_download.py TIMEOUT 600)
#
# natshttp_e2e(NAME FILE [TIMEOUT seconds] [LABELS label...]) adds the CTest
# test e2e_<NAME> running `python3 tests/e2e/<FILE>`, with NATSHTTP_BIN set to
# the built binary, NATSHTTP_BUILD_DIR to the build tree (for helper programs
# built there) and NATSHTTP_E2E_TIMEOUT to the timeout (default 120 s), so
# the harness can stop everything itself just before CTest would kill it.
# Exit status 77 (every test in the module skipped) is reported as skipped.

find_program(NATSHTTP_PYTHON3 NAMES python3 REQUIRED)
# Tests that bound memory read this: AddressSanitizer's shadow memory and
# quarantine raise every process's RSS, so their bounds scale with it.
if(NATSHTTP_SANITIZE)
  set(NATSHTTP_E2E_SANITIZED 1)
else()
  set(NATSHTTP_E2E_SANITIZED 0)
endif()
set(NATSHTTP_E2E_DIR "${CMAKE_CURRENT_LIST_DIR}")

function(natshttp_e2e NAME FILE)
  cmake_parse_arguments(E2E "" "TIMEOUT" "LABELS" ${ARGN})
  if(E2E_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "natshttp_e2e(${NAME}): unexpected arguments: ${E2E_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT E2E_TIMEOUT)
    set(E2E_TIMEOUT 120)
  endif()
  if(NOT EXISTS "${NATSHTTP_E2E_DIR}/${FILE}")
    message(FATAL_ERROR "natshttp_e2e(${NAME}): ${NATSHTTP_E2E_DIR}/${FILE} does not exist")
  endif()
  set(labels e2e ${E2E_LABELS})
  add_test(NAME e2e_${NAME}
           COMMAND ${NATSHTTP_PYTHON3} ${NATSHTTP_E2E_DIR}/${FILE}
           WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(e2e_${NAME} PROPERTIES
    TIMEOUT ${E2E_TIMEOUT}
    SKIP_RETURN_CODE 77
    LABELS "${labels}"
    ENVIRONMENT "NATSHTTP_BIN=$<TARGET_FILE:nats-http>;NATSHTTP_ECHO=$<TARGET_FILE:echo_responder>;NATSHTTP_NATSRAW=$<TARGET_FILE:natsraw>;NATSHTTP_BUILD_DIR=${CMAKE_BINARY_DIR};NATSHTTP_SANITIZED=${NATSHTTP_E2E_SANITIZED};NATSHTTP_E2E_TIMEOUT=${E2E_TIMEOUT};PYTHONDONTWRITEBYTECODE=1;PYTHONUNBUFFERED=1")
endfunction()

# The harness's own self-test (needs nats-server, not nats-http).
natshttp_e2e(harness test_harness.py TIMEOUT 120)
# The README's first command (scripts/demo.sh --once) and the sample content.
natshttp_e2e(demo test_demo.py TIMEOUT 120)
