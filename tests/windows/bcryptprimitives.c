/* Test-only stand-in for Windows' bcryptprimitives.dll under Wine (issue 23); never shipped.
 *
 * Rust's std on Windows draws its random bytes (HashMap keys, and ring's through getrandom) from
 * ProcessPrng in bcryptprimitives.dll, which Windows 10+ has and Debian's Wine 8 does not export.
 * This DLL, put beside mlflow-oidc.exe by scripts/wine-env, exports it over RtlGenRandom
 * (advapi32's SystemFunction036), which Wine implements from the host's /dev/urandom. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
