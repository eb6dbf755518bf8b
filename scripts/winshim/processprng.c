/*
 * bcryptprimitives.dll for Wine 8.0, which lacks it.
 *
 * Go 1.22 and later get their random bytes on Windows from ProcessPrng in
 * bcryptprimitives.dll. Wine 8.0 does not ship that DLL, so every Go test
 * binary dies at start with "bcryptprimitives.dll not found". This DLL exports
 * ProcessPrng and answers it with RtlGenRandom (SystemFunction036 in
 * advapi32), which Wine implements. It is used only to run the Windows tests
 * under Wine; nothing ships it.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
	while (length > 0) {
		ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
		if (!SystemFunction036(data, chunk))
			return FALSE;
		data += chunk;
		length -= chunk;
	}
	return TRUE;
}
