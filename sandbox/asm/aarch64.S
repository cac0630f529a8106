// lambdalet's strict exec helper, aarch64 (sandbox/exec_helper.py holds its bytes and builds the ELF around them).
//   helper NETNS_FD|- SELF_FD|- PROGRAM ARGV0 ARGV...
// Closes SELF_FD, joins NETNS_FD's network namespace and closes it, sets no_new_privs and loads the
// seccomp filter at `fprog` (appended by the builder; none if its length is 0), then execve(PROGRAM,
// ARGV0..., the environment it got). On failure: a line on stderr, exit 126 (127: PROGRAM not found).
    .text
    .globl _start
_start:
    ldr     x19, [sp]               // argc
    add     x20, sp, #8             // argv
    adr     x1, msg_usage
    mov     x0, #0
    cmp     x19, #5
    b.lo    fail
    ldr     x0, [x20, #8]           // NETNS_FD
    bl      parse
    mov     x21, x0
    ldr     x0, [x20, #16]          // SELF_FD
    bl      parse
    tbnz    x0, #63, 1f
    mov     x8, #57                 // close
    svc     #0
1:  tbnz    x21, #63, 2f
    mov     x0, x21
    mov     x1, #0x40000000         // CLONE_NEWNET
    mov     x8, #268                // setns
    svc     #0
    adr     x1, msg_setns
    cbnz    x0, fail
    mov     x0, x21
    mov     x8, #57                 // close
    svc     #0
2:  adr     x22, fprog
    ldrh    w0, [x22]
    cbz     w0, 3f
    mov     x0, #38                 // PR_SET_NO_NEW_PRIVS
    mov     x1, #1
    mov     x2, #0
    mov     x3, #0
    mov     x4, #0
    mov     x8, #167                // prctl
    svc     #0
    adr     x1, msg_nnp
    cbnz    x0, fail
    mov     x0, #22                 // PR_SET_SECCOMP
    mov     x1, #2                  // SECCOMP_MODE_FILTER
    mov     x2, x22
    mov     x3, #0
    mov     x4, #0
    mov     x8, #167                // prctl
    svc     #0
    adr     x1, msg_seccomp
    cbnz    x0, fail
3:  ldr     x0, [x20, #24]          // PROGRAM
    add     x1, x20, #32            // ARGV0...
    add     x2, x20, x19, lsl #3
    add     x2, x2, #8              // the environment, after argv's NULL
    mov     x8, #221                // execve
    svc     #0
    mov     x23, x0
    adr     x1, msg_exec
    bl      puts
    ldr     x1, [x20, #24]
    bl      puts
    adr     x1, msg_newline
    mov     x0, x23
fail:                               // x1: the message; x0: 0 or -errno
    mov     x23, x0
    bl      puts
    mov     x0, #126
    cmn     x23, #2                 // ENOENT
    b.ne    4f
    mov     x0, #127
4:  mov     x8, #94                 // exit_group
    svc     #0

puts:                               // write the NUL-terminated string at x1 to stderr
    mov     x2, #0
5:  ldrb    w3, [x1, x2]
    cbz     w3, 6f
    add     x2, x2, #1
    b       5b
6:  mov     x0, #2
    mov     x8, #64                 // write
    svc     #0
    ret

parse:                              // x0 = the decimal at x0, or -1 if it does not start with a digit
    mov     x1, x0
    mov     x0, #-1
    ldrb    w2, [x1]
    sub     w2, w2, #48
    cmp     w2, #9
    b.hi    8f
    mov     x0, #0
    mov     x3, #10
7:  ldrb    w2, [x1], #1
    sub     w2, w2, #48
    cmp     w2, #9
    b.hi    8f
    madd    x0, x0, x3, x2
    b       7b
8:  ret

msg_usage:   .asciz "lambdalet strict: usage: helper NETNS_FD SELF_FD PROGRAM ARGV0...\n"
msg_setns:   .asciz "lambdalet strict: setns(CLONE_NEWNET) failed\n"
msg_nnp:     .asciz "lambdalet strict: prctl(PR_SET_NO_NEW_PRIVS) failed\n"
msg_seccomp: .asciz "lambdalet strict: prctl(PR_SET_SECCOMP) failed\n"
msg_exec:    .asciz "lambdalet strict: cannot exec "
msg_newline: .asciz "\n"
    .balign 8
fprog:                              // struct sock_fprog, written by the builder
    .quad   0, 0
