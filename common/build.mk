# SPDX-License-Identifier: MIT
# Settings every directory's Makefile includes: paths, compiler and the warning set.
TOP      := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
BUILD    := $(TOP)/build
BIN      := $(BUILD)/bin
LIB      := $(BUILD)/lib
OBJ      := $(BUILD)/obj

CC       ?= gcc
WARNINGS := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
            -Wformat=2 -Wno-unused-parameter
ifneq ($(CI),)
WARNINGS += -Werror
endif
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 $(WARNINGS) -fPIC -D_GNU_SOURCE -I$(TOP)/common -MMD -MP
LDFLAGS  ?=
