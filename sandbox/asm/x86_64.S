# lambdalet's strict exec helper, x86_64 (sandbox/exec_helper.py holds its bytes and builds the ELF around them).
#   helper NETNS_FD|- SELF_FD|- PROGRAM ARGV0 ARGV...
# Closes SELF_FD, joins NETNS_FD's network namespace and closes it, sets no_new_privs and loads the
# seccomp filter at `fprog` (appended by the builder; none if its length is 0), then execve(PROGRAM,
# ARGV0..., the environment it got). On failure: a line on stderr, exit 126 (127: PROGRAM not found).
    .text
    .globl _start
_start:
    mov     (%rsp), %rbx            # argc
    lea     8(%rsp), %rbp           # argv
    lea     msg_usage(%rip), %rsi
    xor     %eax, %eax
    cmp     $5, %rbx
    jb      fail
    mov     8(%rbp), %rdi           # NETNS_FD
    call    parse
    mov     %rax, %r12
    mov     16(%rbp), %rdi          # SELF_FD
    call    parse
    test    %rax, %rax
    js      1f
    mov     %rax, %rdi
    mov     $3, %eax                # close
    syscall
1:  test    %r12, %r12
    js      2f
    mov     %r12, %rdi
    mov     $0x40000000, %esi       # CLONE_NEWNET
    mov     $308, %eax              # setns
    syscall
    lea     msg_setns(%rip), %rsi
    test    %rax, %rax
    jnz     fail
    mov     %r12, %rdi
    mov     $3, %eax                # close
    syscall
2:  lea     fprog(%rip), %r14
    cmpw    $0, (%r14)
    je      3f
    mov     $38, %edi               # PR_SET_NO_NEW_PRIVS
    mov     $1, %esi
    xor     %edx, %edx
    xor     %r10d, %r10d
    xor     %r8d, %r8d
    mov     $157, %eax              # prctl
    syscall
    lea     msg_nnp(%rip), %rsi
    test    %rax, %rax
    jnz     fail
    mov     $22, %edi               # PR_SET_SECCOMP
    mov     $2, %esi                # SECCOMP_MODE_FILTER
    mov     %r14, %rdx
    xor     %r10d, %r10d
    xor     %r8d, %r8d
    mov     $157, %eax              # prctl
    syscall
    lea     msg_seccomp(%rip), %rsi
    test    %rax, %rax
    jnz     fail
3:  mov     24(%rbp), %rdi          # PROGRAM
    lea     32(%rbp), %rsi          # ARGV0...
    lea     8(%rbp,%rbx,8), %rdx    # the environment, after argv's NULL
    mov     $59, %eax               # execve
    syscall
    mov     %rax, %r15
    lea     msg_exec(%rip), %rsi
    call    puts
    mov     24(%rbp), %rsi
    call    puts
    lea     msg_newline(%rip), %rsi
    mov     %r15, %rax
fail:                               # rsi: the message; rax: 0 or -errno
    mov     %rax, %r15
    call    puts
    mov     $126, %edi
    cmp     $-2, %r15               # ENOENT
    jne     4f
    mov     $127, %edi
4:  mov     $231, %eax              # exit_group
    syscall

puts:                               # write the NUL-terminated string at rsi to stderr
    xor     %edx, %edx
5:  cmpb    $0, (%rsi,%rdx)
    je      6f
    inc     %rdx
    jmp     5b
6:  mov     $2, %edi
    mov     $1, %eax                # write
    syscall
    ret

parse:                              # rax = the decimal at rdi, or -1 if it does not start with a digit
    mov     $-1, %rax
    movzbl  (%rdi), %ecx
    sub     $48, %ecx
    cmp     $9, %ecx
    ja      8f
    xor     %eax, %eax
7:  movzbl  (%rdi), %ecx
    sub     $48, %ecx
    cmp     $9, %ecx
    ja      8f
    imul    $10, %rax, %rax
    add     %rcx, %rax
    inc     %rdi
    jmp     7b
8:  ret

msg_usage:   .asciz "lambdalet strict: usage: helper NETNS_FD SELF_FD PROGRAM ARGV0...\n"
msg_setns:   .asciz "lambdalet strict: setns(CLONE_NEWNET) failed\n"
msg_nnp:     .asciz "lambdalet strict: prctl(PR_SET_NO_NEW_PRIVS) failed\n"
msg_seccomp: .asciz "lambdalet strict: prctl(PR_SET_SECCOMP) failed\n"
msg_exec:    .asciz "lambdalet strict: cannot exec "
msg_newline: .asciz "\n"
    .balign 8
fprog:                              # struct sock_fprog, written by the builder
    .quad   0, 0
